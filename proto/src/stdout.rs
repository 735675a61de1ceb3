//! A closed stdout (`peer list-groups | head -1`, `tracker-node status | head -1`) ends a
//! command quietly, as ripgrep does: exit 0, no panic message, no backtrace; the reader took all
//! it wanted. Both binaries' short-lived commands install this hook; it lives here because
//! proto is the one std-only crate both link.

/// Installs the hook: `print!` panics when its write fails, and this turns that one panic
/// (EPIPE on stdout) into the exit, leaving every other panic to the default hook. For
/// short-lived commands only: a long-running daemon or node outlives whoever reads its stdout.
pub fn exit_quietly_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if is_closed_stdout(info.payload()) {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Whether a panic's payload is `print!`'s failure to write to a closed stdout.
fn is_closed_stdout(payload: &(dyn std::any::Any + Send)) -> bool {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    message.starts_with("failed printing to stdout") && message.contains("Broken pipe")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_failed_print_to_a_closed_stdout_is_taken_for_one() {
        let closed = String::from("failed printing to stdout: Broken pipe (os error 32)");
        assert!(is_closed_stdout(&closed));
        assert!(is_closed_stdout(&"failed printing to stdout: Broken pipe (os error 32)"));
        assert!(!is_closed_stdout(&String::from("failed printing to stdout: No space left on device (os error 28)")));
        assert!(!is_closed_stdout(&String::from("failed printing to stderr: Broken pipe (os error 32)")));
        assert!(!is_closed_stdout(&String::from("index out of bounds")));
        assert!(!is_closed_stdout(&42u32));
    }
}
