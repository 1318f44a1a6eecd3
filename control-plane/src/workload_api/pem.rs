//! PEM to the DER the Workload API puts on the wire (concatenated blocks).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Decode every `label` block in `text` and concatenate the DER bytes, in order.
pub(crate) fn concat_der(text: &str, label: &str) -> Vec<u8> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((_, after)) = rest.split_once(&begin) {
        let Some((body, tail)) = after.split_once(&end) else {
            break;
        };
        let joined: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        if let Ok(der) = STANDARD.decode(joined) {
            out.extend_from_slice(&der);
        }
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_decoded_and_concatenated_in_order() {
        let text = "junk\n-----BEGIN CERTIFICATE-----\nAQI=\n-----END CERTIFICATE-----\n\
                    -----BEGIN CERTIFICATE-----\nAw==\n-----END CERTIFICATE-----\n";
        assert_eq!(concat_der(text, "CERTIFICATE"), vec![1, 2, 3]);
        assert!(concat_der(text, "PRIVATE KEY").is_empty());
    }
}
