//! Which operation a person may ask of a download in which state (STATE.md): plain data, for
//! the control side (`manage.rs`) and the download's task (`actor.rs`) alike.

use crate::control::DownloadState;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Cancel,
    Pause,
    Resume,
    Forget,
}

impl Op {
    pub fn word(self) -> &'static str {
        match self {
            Op::Cancel => "cancel",
            Op::Pause => "pause",
            Op::Resume => "resume",
            Op::Forget => "forget",
        }
    }
}

/// What an operation does to a download in a given state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It applies: the download changes.
    Act,
    /// The download is already where the operation would take it (pause a paused one).
    Already,
    /// It does not apply to this state.
    Skip,
}

/// The state transitions a person may ask for (STATE.md): cancel an active (downloading or
/// paused) download, pause a downloading one, resume a paused one, forget a finished one.
pub fn verdict(op: Op, state: DownloadState) -> Verdict {
    use DownloadState::*;
    match (op, state) {
        (Op::Cancel, Downloading | Paused) => Verdict::Act,
        (Op::Pause, Downloading) => Verdict::Act,
        (Op::Pause, Paused) => Verdict::Already,
        (Op::Resume, Paused) => Verdict::Act,
        (Op::Resume, Downloading) => Verdict::Already,
        (Op::Forget, Complete | Failed) => Verdict::Act,
        _ => Verdict::Skip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_state_each_operation_applies_to() {
        use Verdict::*;
        let table: [(Op, [Verdict; 4]); 4] = [
            //                 downloading paused   complete failed
            (Op::Cancel, [Act, Act, Skip, Skip]),
            (Op::Pause, [Act, Already, Skip, Skip]),
            (Op::Resume, [Already, Act, Skip, Skip]),
            (Op::Forget, [Skip, Skip, Act, Act]),
        ];
        for (op, want) in table {
            for (state, v) in DownloadState::ALL.into_iter().zip(want) {
                assert_eq!(verdict(op, state), v, "{op:?} on {state}");
            }
        }
    }
}
