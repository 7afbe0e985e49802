//! A WASI command component (`wasi:cli/command`), used to test that upload refuses other worlds.

fn main() {
    println!("I am a command, not a Sluice job module");
}
