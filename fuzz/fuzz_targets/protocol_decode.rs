//! Decodes arbitrary bytes as both directions' WebSocket frames. Decoding may refuse, never
//! panic; whatever decodes re-encodes to a frame that decodes to an equal message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::{AgentMessage, ControllerMessage, decode, encode};

fuzz_target!(|data: &[u8]| {
    // Frames are WebSocket text frames: UTF-8 by construction.
    let Ok(frame) = std::str::from_utf8(data) else {
        return;
    };
    round_trip::<AgentMessage>(frame);
    round_trip::<ControllerMessage>(frame);
});

fn round_trip<T>(frame: &str)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(message) = decode::<T>(frame) else {
        return;
    };
    let again = encode(&message);
    match decode::<T>(&again) {
        Ok(decoded) => assert_eq!(
            decoded, message,
            "re-decoding changed the message\nframe: {frame}\nre-encoded: {again}"
        ),
        Err(e) => panic!(
            "a decoded message does not decode again: {e}\nframe: {frame}\nre-encoded: {again}"
        ),
    }
}
