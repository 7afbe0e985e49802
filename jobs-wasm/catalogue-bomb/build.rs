//! Generates 1,001 job functions: one more than a module may export.

fn main() {
    let count = 1001;
    let mut code = String::new();
    for i in 0..count {
        code += &format!("fn job_{i}() -> Result<u32, std::convert::Infallible> {{ Ok({i}) }}\n");
    }
    code += "sluice_guest_sdk::export_jobs! {\n";
    for i in 0..count {
        code += &format!("    job_{i},\n");
    }
    code += "}\n";
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("jobs.rs");
    std::fs::write(out, code).unwrap();
}
