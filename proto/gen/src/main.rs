//! `cargo run -p warden-proto-gen`: rewrite the committed protobuf code from `proto/`.

fn main() -> anyhow::Result<()> {
    let root = warden_proto_gen::workspace_root();
    let files = warden_proto_gen::generate(&root)?;
    warden_proto_gen::write(&root, &files)?;
    for path in files.keys() {
        println!("wrote {}", path.display());
    }
    Ok(())
}
