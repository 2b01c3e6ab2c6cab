//! A member's mapped values as one number: what the synced state keeps to tell a changed
//! member from an unchanged one without keeping the values.

use std::hash::Hasher;

use twox_hash::XxHash3_64;

use crate::campaign_monitor::ImportSubscriber;

/// The fingerprint of everything an import would set: name, consent and the custom fields'
/// values, in the mapping's order. Stable across builds and platforms. Neither the address
/// nor the fields' keys are part of it: the keys are the list's spelling of the mapping's,
/// and the synced state records the mapping itself.
pub fn fingerprint(member: &ImportSubscriber) -> u64 {
    let mut hash = XxHash3_64::with_seed(0);
    let hash = &mut hash;
    match &member.name {
        None => hash.write_u8(0),
        Some(name) => tagged(hash, 1, name),
    }
    tagged(hash, 1, member.consent_to_track.as_str());
    for field in &member.custom_fields {
        match field.clear {
            false => tagged(hash, 1, &field.value),
            true => hash.write_u8(2),
        }
    }
    // Hashed only when mapped, so that members of mappings without them keep their
    // fingerprints (a `changes` export would otherwise resend everyone once).
    if let Some(mobile) = &member.mobile_number {
        tagged(hash, 3, mobile);
    }
    if let Some(sms) = member.consent_to_send_sms {
        tagged(hash, 4, sms.as_str());
    }
    hash.finish()
}

/// A value after a tag of its kind and its length, so ("ab", "c") and ("a", "bc") differ.
fn tagged(hash: &mut XxHash3_64, tag: u8, value: &str) {
    hash.write_u8(tag);
    hash.write_u64(value.len() as u64);
    hash.write(value.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign_monitor::{ConsentToTrack, ImportField};

    fn member(name: Option<&str>, fields: &[(&str, &str)]) -> ImportSubscriber {
        ImportSubscriber {
            email_address: "jane@example.com".into(),
            name: name.map(str::to_owned),
            custom_fields: fields
                .iter()
                .map(|(k, v)| ImportField {
                    key: (*k).into(),
                    value: (*v).into(),
                    clear: false,
                })
                .collect(),
            consent_to_track: ConsentToTrack::Yes,
            row_key: None,
            mobile_number: None,
            consent_to_send_sms: None,
        }
    }

    #[test]
    fn every_mapped_value_counts_and_nothing_else() {
        let base = member(Some("Jane"), &[("City", "Cluj")]);
        let same = ImportSubscriber {
            email_address: "JANE@example.com".into(),
            row_key: Some("customer-7".into()),
            ..base.clone()
        };
        assert_eq!(fingerprint(&base), fingerprint(&same));
        let spelled = member(Some("Jane"), &[("city", "Cluj")]);
        assert_eq!(
            fingerprint(&base),
            fingerprint(&spelled),
            "the list's spelling of a key"
        );
        // Pinned: a state written by one build is read by the next.
        assert_eq!(fingerprint(&base), 0x0892_ecdc_1ef6_d610, "{:#x}", fingerprint(&base));
        let nameless = member(None, &[("City", "Cluj")]);
        assert_eq!(
            fingerprint(&nameless),
            0x5a85_7bfd_5897_e64a,
            "{:#x}",
            fingerprint(&nameless)
        );
        let mut others = vec![
            member(None, &[("City", "Cluj")]),
            member(Some(""), &[("City", "Cluj")]),
            member(Some("Jane"), &[("City", "Iasi")]),
            member(Some("Jane"), &[]),
            member(Some("JaneCluj"), &[("City", "")]),
            ImportSubscriber {
                consent_to_track: ConsentToTrack::No,
                ..base.clone()
            },
        ];
        others.push(member(Some("Jane"), &[("City", "Cluj"), ("Tier", "")]));
        let mut cleared = member(Some("Jane"), &[("City", "")]);
        cleared.custom_fields[0].clear = true;
        others.push(cleared);
        others.push(ImportSubscriber {
            mobile_number: Some("+40712345678".into()),
            ..base.clone()
        });
        others.push(ImportSubscriber {
            consent_to_send_sms: Some(ConsentToTrack::Unchanged),
            ..base.clone()
        });
        for other in &others {
            assert_ne!(fingerprint(&base), fingerprint(other), "{other:?}");
        }
    }
}
