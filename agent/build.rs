// The commit for `--version`: the controller's build script, shared.
include!("../controller/build.rs");
