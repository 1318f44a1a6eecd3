//! `prost_named!(Type, "package", "Message")`: the `prost::Name` impl (full name and
//! `type.googleapis.com/` type URL) for hand-written prost messages that are packed into
//! `google.protobuf.Any` (the RBAC filter config mirror, the access-log config).

macro_rules! prost_named {
    ($ty:ty, $package:literal, $name:literal) => {
        impl prost::Name for $ty {
            const NAME: &'static str = $name;
            const PACKAGE: &'static str = $package;
            fn full_name() -> String {
                format!("{}.{}", $package, $name)
            }
            fn type_url() -> String {
                format!("type.googleapis.com/{}.{}", $package, $name)
            }
        }
    };
}
