//! A test guest whose catalogue is too long: upload must refuse it, naming the cap.

include!(concat!(env!("OUT_DIR"), "/jobs.rs"));
