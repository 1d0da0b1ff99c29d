//! Hook kinds and hook info: names, order, serialisation, validation
//! (juju's `InfoSuite.TestValidate` table) and file names.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use steward_hooks::{Error, HookInfo, HookKind};

fn info(kind: HookKind, remote_unit: Option<&str>) -> HookInfo {
    HookInfo {
        kind,
        relation_id: kind.is_relation().then_some(1),
        remote_unit: remote_unit.map(String::from),
        change_version: None,
    }
}

#[test]
fn juju_validate_table() {
    use HookKind::*;
    let cases: &[(HookInfo, Option<&str>)] = &[
        (
            info(RelationJoined, None),
            Some(r#""relation-joined" hook requires a remote unit"#),
        ),
        (
            info(RelationChanged, None),
            Some(r#""relation-changed" hook requires a remote unit"#),
        ),
        (
            info(RelationDeparted, None),
            Some(r#""relation-departed" hook requires a remote unit"#),
        ),
        (info(Install, None), None),
        (info(Start, None), None),
        (info(ConfigChanged, None), None),
        (info(Upgrade, None), None),
        (info(Stop, None), None),
        (info(RelationJoined, Some("x")), None),
        (info(RelationChanged, Some("x")), None),
        (info(RelationDeparted, Some("x")), None),
        (info(RelationBroken, None), None),
    ];
    for (hook, expected) in cases {
        let got = hook.validate().err().map(|error| error.to_string());
        assert_eq!(got.as_deref(), *expected, "{hook:?}");
    }
}

#[test]
fn an_unknown_kind_is_a_parse_error() {
    let error = "grok".parse::<HookKind>().unwrap_err();
    assert!(matches!(&error, Error::UnknownHookKind { kind } if kind == "grok"));
    assert_eq!(error.to_string(), r#"unknown hook kind "grok""#);
    // juju's name for the upgrade hook is not ours.
    assert!("upgrade-charm".parse::<HookKind>().is_err());
}

#[test]
fn an_empty_remote_unit_is_no_remote_unit() {
    let hook = info(HookKind::RelationJoined, Some(""));
    assert!(matches!(
        hook.validate(),
        Err(Error::RemoteUnitRequired {
            kind: HookKind::RelationJoined
        })
    ));
}

#[test]
fn relation_hooks_require_a_relation_id() {
    for kind in HookKind::relation_hooks() {
        let hook = HookInfo {
            relation_id: None,
            ..info(*kind, Some("db/0"))
        };
        let error = hook.validate().unwrap_err();
        assert!(
            matches!(error, Error::RelationIdRequired { kind: k } if k == *kind),
            "{kind}"
        );
        assert_eq!(
            error.to_string(),
            format!("{:?} hook requires a relation id", kind.as_str())
        );
    }
    // Like juju, fields a kind does not use are not rejected.
    let unit_hook = HookInfo {
        relation_id: Some(3),
        remote_unit: Some("x".into()),
        ..HookInfo::unit(HookKind::Install)
    };
    assert!(unit_hook.validate().is_ok());
}

#[test]
fn kinds_come_in_lifecycle_order_with_their_names() {
    let names = |kinds: &[HookKind]| kinds.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names(HookKind::unit_hooks()),
        ["install", "start", "config-changed", "upgrade", "stop"]
    );
    assert_eq!(
        names(HookKind::relation_hooks()),
        [
            "relation-joined",
            "relation-changed",
            "relation-departed",
            "relation-broken"
        ]
    );
    for kind in HookKind::unit_hooks() {
        assert!(!kind.is_relation(), "{kind}");
    }
    for kind in HookKind::unit_hooks()
        .iter()
        .chain(HookKind::relation_hooks())
    {
        assert_eq!(kind.as_str().parse::<HookKind>().unwrap(), *kind);
        // The serde name is the same as the display name.
        assert_eq!(
            serde_json::to_value(kind).unwrap(),
            serde_json::json!(kind.as_str())
        );
    }
    for kind in HookKind::relation_hooks() {
        assert!(kind.is_relation(), "{kind}");
    }
}

#[test]
fn info_serialises_with_kebab_case_keys_and_without_absent_fields() {
    let joined = HookInfo::relation(HookKind::RelationJoined, 7, Some("db/1".into()), Some(3));
    assert_eq!(
        serde_json::to_value(&joined).unwrap(),
        serde_json::json!({
            "kind": "relation-joined",
            "relation-id": 7,
            "remote-unit": "db/1",
            "change-version": 3,
        })
    );
    let install = HookInfo::unit(HookKind::Install);
    assert_eq!(
        serde_json::to_value(&install).unwrap(),
        serde_json::json!({"kind": "install"})
    );
    let back: HookInfo =
        serde_json::from_str(r#"{"kind":"relation-broken","relation-id":2}"#).unwrap();
    assert_eq!(
        back,
        HookInfo::relation(HookKind::RelationBroken, 2, None, None)
    );
    assert!(serde_json::from_str::<HookInfo>(r#"{"kind":"grok"}"#).is_err());
}

#[test]
fn file_names_prefix_relation_hooks_with_the_endpoint() {
    assert_eq!(
        HookInfo::unit(HookKind::ConfigChanged)
            .file_name(None)
            .unwrap(),
        "config-changed"
    );
    // An endpoint does not change a unit hook's name.
    assert_eq!(
        HookInfo::unit(HookKind::Install)
            .file_name(Some("db"))
            .unwrap(),
        "install"
    );
    let joined = HookInfo::relation(HookKind::RelationJoined, 1, Some("db/0".into()), None);
    assert_eq!(joined.file_name(Some("db")).unwrap(), "db-relation-joined");
    for endpoint in [None, Some("")] {
        assert!(matches!(
            joined.file_name(endpoint),
            Err(Error::EndpointRequired {
                kind: HookKind::RelationJoined
            })
        ));
    }
}
