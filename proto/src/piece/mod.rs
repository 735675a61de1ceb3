//! The peer-to-peer piece protocol: frames, messages and an incremental codec.
