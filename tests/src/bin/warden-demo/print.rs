//! The demo's printed tables: identities as Envoy holds them, attestation and CA state,
//! and what each response tells.

use anyhow::Result;
use warden_e2e::http::Response;
use warden_e2e::warden as wcli;

use super::Demo;

/// How the sidecars proved who they are, and the CA's rotation state in plain words.
pub(super) fn print_control_plane(demo: &Demo) -> Result<bool> {
    let metric = |name: &str, labels: &[(&str, &str)]| demo.warden.metric(name, labels);
    let attested = metric("warden_xds_attestations_total", &[("method", "join_token")])?;
    let refused = metric("warden_xds_attestation_failures_total", &[])?;
    let rows = vec![[
        format!("{attested} ADS stream(s) admitted by join token"),
        format!("{refused} refused"),
        "ADS over TLS with the control plane's SVID; each stream proves its workload \
         (token hash in tokens.yaml) and may only claim that workload's node id"
            .to_string(),
    ]];
    print_table(
        "Who may fetch which SVID (attestation on the xDS channel)",
        &["admitted", "refused", "how"],
        &rows,
    );
    let dir = demo.dir.display().to_string();
    let status = wcli::cli(&["ca", "status", "--config", &dir], &demo.env)?;
    println!("\nCertificate authority (`warden ca status`):");
    for line in status.lines() {
        println!("  {line}");
    }
    Ok(attested >= demo.sidecars.len() as f64)
}

/// What the response tells: who the backend saw, or why it was denied.
pub(super) fn explain(r: &Response) -> String {
    if r.status == 200 {
        if let Ok(body) = r.json() {
            let caller = body["headers"]["x-spiffe-id"].as_str().unwrap_or("?");
            return format!(
                "{} app saw caller {caller}",
                body["app"].as_str().unwrap_or("?")
            );
        }
    }
    // With expose_reason the body carries the decision id and the reason; else the header.
    let body = r.text();
    let body = body.trim();
    if body.is_empty() {
        return format!(
            "decision {}",
            r.header("x-warden-decision-id").unwrap_or("-")
        );
    }
    // Envoy's RBAC filter (the native path) knows only that no rule allowed: show the
    // decision id; `warden policy eval` (printed at the end) gives the Rego reason.
    if body == "RBAC: access denied" {
        return format!(
            "native RBAC: no rule allows (decision {})",
            r.header("x-warden-decision-id").unwrap_or("-")
        );
    }
    body.chars().take(110).collect()
}

pub(super) fn print_identities(demo: &Demo) -> Result<()> {
    let mut rows = Vec::new();
    for (name, envoy) in &demo.sidecars {
        let certs = envoy.certs()?;
        let mut found = false;
        for c in certs["certificates"].as_array().into_iter().flatten() {
            for leaf in c["cert_chain"].as_array().into_iter().flatten() {
                let uri = leaf["subject_alt_names"]
                    .as_array()
                    .and_then(|s| s.iter().find_map(|x| x["uri"].as_str()))
                    .unwrap_or("");
                if uri.is_empty() || found {
                    continue;
                }
                found = true;
                rows.push([
                    name.clone(),
                    uri.to_string(),
                    leaf["serial_number"]
                        .as_str()
                        .unwrap_or("")
                        .chars()
                        .take(12)
                        .collect::<String>(),
                    leaf["expiration_time"].as_str().unwrap_or("").to_string(),
                ]);
            }
        }
    }
    print_table(
        "Workload identities (X.509-SVIDs as Envoy holds them, from its /certs)",
        &["workload", "SPIFFE ID", "serial", "expires (UTC)"],
        &rows,
    );
    Ok(())
}

pub(super) fn print_table<const N: usize>(title: &str, head: &[&str; N], rows: &[[String; N]]) {
    let mut width = head.map(|h| h.chars().count());
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = width[i]))
            .collect();
        println!("  {}", parts.join("  ").trim_end());
    };
    println!("\n{title}");
    line(head.iter().map(|h| h.to_string()).collect());
    line(width.iter().map(|w| "─".repeat(*w)).collect());
    for r in rows {
        line(r.to_vec());
    }
}
