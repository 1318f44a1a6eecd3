//! The committed generated code is what `proto/` generates today.

#[test]
fn committed_code_matches_the_proto_files() {
    let root = warden_proto_gen::workspace_root();
    let files = warden_proto_gen::generate(&root).expect("generation succeeds");
    assert!(
        files.len() >= 4,
        "expected the Workload API and three Envoy packages: {:?}",
        files.keys()
    );
    let stale = warden_proto_gen::stale(&root, &files).unwrap();
    assert!(
        stale.is_empty(),
        "generated protobuf code is stale: {stale:?}; run `cargo run -p warden-proto-gen` and commit the result"
    );
}
