//! Attestation settings (`attestation:` in warden.yaml) and join token records
//! (`tokens.yaml`): files readable, JWKS well-formed, records well-formed and for known
//! workloads.

use std::path::Path;

use super::ctx::Ctx;
use super::diag::Diagnostic;
use super::files::Parsed;
use super::raw::{RawTokens, RawWarden};
use super::{AttestationSettings, JoinTokenRecord, KubernetesSettings, Workload};

pub(super) fn attestation_settings(
    dir: &Path,
    raw: &RawWarden,
    ctx: &mut Ctx<'_, RawWarden>,
) -> AttestationSettings {
    let kubernetes = raw.attestation.kubernetes.as_ref().and_then(|k| {
        let jwks_file = dir.join(&k.jwks_file);
        let jwks = match crate::fsutil::read_text(&jwks_file) {
            Ok(text) => text,
            Err(e) => {
                ctx.error("attestation.kubernetes.jwks_file", format!("cannot read {}: {e}", jwks_file.display()),
                    Some("save the cluster's service-account issuer keys: kubectl get --raw /openid/v1/jwks > FILE".into()));
                return None;
            }
        };
        // The very parser `serve` uses (jsonwebtoken's JwkSet): what validates, loads.
        if let Err(e) = serde_json::from_str::<jsonwebtoken::jwk::JwkSet>(&jwks) {
            ctx.error(
                "attestation.kubernetes.jwks_file",
                format!("{} is not a JWKS document `serve` can use: {e}", jwks_file.display()),
                Some("save the cluster's service-account issuer keys: kubectl get --raw /openid/v1/jwks > FILE".into()),
            );
            return None;
        }
        // An empty issuer or audience would match tokens that carry none.
        let empty = [("issuer", k.issuer.as_str()), ("audience", k.audience.as_deref().unwrap_or("warden"))]
            .into_iter()
            .filter(|(_, v)| v.trim().is_empty())
            .map(|(key, _)| {
                ctx.error(
                    &format!("attestation.kubernetes.{key}"),
                    format!("kubernetes {key} is empty"),
                    Some("issuer: the cluster's service-account issuer URL (kubectl get --raw /.well-known/openid-configuration); audience: the one in the projected token (default warden)".into()),
                )
            })
            .count();
        if empty > 0 {
            return None;
        }
        Some(KubernetesSettings {
            issuer: k.issuer.clone(),
            audience: k.audience.clone().unwrap_or_else(|| "warden".into()),
            jwks_file,
            jwks,
        })
    });
    AttestationSettings { kubernetes }
}

pub(super) fn join_tokens(
    file: &Parsed<RawTokens>,
    workloads: &[Workload],
    diags: &mut Vec<Diagnostic>,
) -> Vec<JoinTokenRecord> {
    let mut ctx = Ctx { file, diags };
    let mut out = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (i, t) in file.value.tokens.iter().enumerate() {
        let at = |field: &str| format!("tokens[{i}].{field}");
        let id_ok = t.id.len() == 8 && t.id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !id_ok || !ids.insert(t.id.as_str()) {
            let what = if id_ok {
                "is listed twice (revoking it would revoke only the first)"
            } else {
                "is not 8 lowercase hex digits"
            };
            ctx.error(
                &at("id"),
                format!("token id `{}` {what}", super::diag::clip(&t.id)),
                Some(
                    "records are written by `warden token create`; do not edit them by hand".into(),
                ),
            );
            continue;
        }
        // `workloads` is sorted by name.
        if workloads
            .binary_search_by(|w| w.name.as_str().cmp(&t.workload))
            .is_err()
        {
            ctx.error(
                &at("workload"),
                format!("token {} is for unknown workload `{}`", t.id, t.workload),
                None,
            );
            continue;
        }
        let sha256 = hex::decode(&t.sha256)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok());
        let Some(sha256) = sha256 else {
            ctx.error(
                &at("sha256"),
                "sha256 must be 64 hex digits",
                Some(
                    "records are written by `warden token create`; do not edit them by hand".into(),
                ),
            );
            continue;
        };
        let expires =
            time::OffsetDateTime::parse(&t.expires, &time::format_description::well_known::Rfc3339);
        let Ok(expires) = expires else {
            ctx.error(
                &at("expires"),
                format!("`{}` is not an RFC 3339 time", t.expires),
                Some("e.g. 2026-12-01T12:00:00Z".into()),
            );
            continue;
        };
        out.push(JoinTokenRecord {
            id: t.id.clone(),
            workload: t.workload.clone(),
            sha256,
            expires: expires.into(),
            revoked: t.revoked,
        });
    }
    out
}
