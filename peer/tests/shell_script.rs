//! `peer shell` with a script on stdin, for what needs no tracker: the shell's words and their
//! usage lines (today's messages, not clap's), "did you mean", `help`, `quit`, a password read
//! from the next line, and the exit code of the last line that failed.

use std::process::Command;

use testkit::{peer_bin, Run};

/// `peer shell` fed `script`, in an empty HOME and folder, with no tracker configured:
/// (exit code, stdout, stderr).
fn shell(script: &str) -> (i32, String, String) {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(peer_bin());
    cmd.arg("shell")
        .current_dir(home.path())
        .env("PEER_HOME", home.path())
        .env_remove("PEER_CLUSTER")
        .env_remove("PEER_TRACKERS");
    let r = Run::of(cmd, script);
    (r.code, r.stdout, r.stderr)
}

#[test]
fn a_line_that_is_not_a_command_gets_the_shells_own_message() {
    let script = "create-group g\nupload_file a\ndownload_file g n d --force\nlogin\nlist_shares x\n\
                  accept_request g\nfrobnicate\nupload g\n\"unclosed\n\n";
    let (code, out, err) = shell(script);
    assert_eq!(code, 2, "the last failure was a usage error: {err}");
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [
            "error: unknown command \"create-group\"; did you mean \"create_group\"?",
            "error: usage: upload_file PATH GROUP",
            "error: usage: download_file GROUP NAME DEST",
            "error: usage: login USER [PASSWORD]",
            "error: usage: list_shares",
            "error: usage: accept_request GROUP USER",
            "error: unknown command \"frobnicate\" (type help)",
            "error: unknown command \"upload\"; did you mean \"upload_file\"?",
            "error: unclosed quote",
        ]
    );
    assert_eq!(out, "", "nothing ran");
}

#[test]
fn help_lists_the_commands_and_quit_ends_the_script() {
    let (code, out, err) = shell("help\n?\nquit\nfrobnicate\n");
    assert_eq!((code, err.as_str()), (0, ""), "quit came before the bad line");
    assert_eq!(out.matches("commands:\n").count(), 2, "help and ? both print it: {out}");
    for line in [
        "  create_user USER [PASSWORD]      (also: register)\n",
        "  upload_file PATH GROUP\n",
        "  download_file GROUP NAME DEST\n",
        "  show_downloads                   [D] downloading, [P] paused, [C] complete, [F] failed\n",
        "  quit                             (also: exit; Ctrl-D)\n",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
    let (code, _, err) = shell("exit\nfrobnicate\n");
    assert_eq!((code, err.as_str()), (0, ""), "exit is quit");
}

#[test]
fn a_password_left_out_is_the_next_line() {
    let (code, _, err) = shell("login alice\n");
    assert_eq!((code, err.trim_end()), (2, "error: no password given"));
    let (code, _, err) = shell("create_user bob\n\n");
    assert_eq!((code, err.trim_end()), (2, "error: the password is empty"));
}
