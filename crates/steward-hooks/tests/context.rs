//! `HookContext`: construction rules, what a hook sees of the unit state
//! and of its relations (its own buffered writes first; a relation's
//! membership as of the hook), and the changes handed to the agent.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use steward_hooks::test_util::MemoryBackend;
use steward_hooks::{Changes, Error, HookContext, HookInfo, HookKind, UnitInfo};

fn unit() -> UnitInfo {
    UnitInfo {
        runtime: "kv".into(),
        unit: "kv/agent-1".into(),
        version: "2.0".into(),
    }
}

#[test]
fn a_context_needs_a_valid_hook_and_an_endpoint_for_relation_hooks() {
    let backend = Arc::new(MemoryBackend::new());
    let install = HookContext::new(
        unit(),
        HookInfo::unit(HookKind::Install),
        None,
        backend.clone(),
    )
    .unwrap();
    assert_eq!(install.hook_name(), "install");
    assert_eq!(install.endpoint(), None);
    assert_eq!(install.relation_label(), None);
    assert_eq!(install.unit(), &unit());

    let joined = HookInfo::relation(HookKind::RelationJoined, 4, Some("db/0".into()), Some(1));
    let context = HookContext::new(unit(), joined.clone(), Some("db"), backend.clone()).unwrap();
    assert_eq!(context.hook_name(), "db-relation-joined");
    assert_eq!(context.endpoint(), Some("db"));
    assert_eq!(context.relation_label().as_deref(), Some("db:4"));
    assert_eq!(context.hook(), &joined);

    assert!(matches!(
        HookContext::new(unit(), joined, None, backend.clone()),
        Err(Error::EndpointRequired { .. })
    ));
    let no_unit = HookInfo::relation(HookKind::RelationChanged, 4, None, None);
    assert!(matches!(
        HookContext::new(unit(), no_unit, Some("db"), backend),
        Err(Error::RemoteUnitRequired { .. })
    ));
}

#[tokio::test]
async fn a_hook_reads_its_own_writes_before_the_persisted_state() {
    let backend = MemoryBackend::new().with_state([("a", "1"), ("b", "2")]);
    let mut context = HookContext::new(
        unit(),
        HookInfo::unit(HookKind::ConfigChanged),
        None,
        Arc::new(backend.clone()),
    )
    .unwrap();
    context.set_state("a", "10");
    context.delete_state("b");
    context.set_state("c", "3");

    assert_eq!(
        context.state_value("a").await.unwrap().as_deref(),
        Some("10")
    );
    assert_eq!(context.state_value("b").await.unwrap(), None);
    assert_eq!(
        context.state_value("c").await.unwrap().as_deref(),
        Some("3")
    );
    assert_eq!(context.state_value("zzz").await.unwrap(), None);
    let seen: Vec<_> = context.state().await.unwrap().into_iter().collect();
    assert_eq!(
        seen,
        [("a".into(), "10".into()), ("c".into(), "3".into())] as [(String, String); 2]
    );
    // Nothing reached the backend: the agent commits only on success.
    assert_eq!(backend.unit_state_now().len(), 2);
    assert_eq!(backend.unit_state_now()["a"], "1");
}

#[tokio::test]
async fn changes_are_handed_out_once_and_applied_by_the_agent() {
    let backend = MemoryBackend::new().with_state([("keep", "k"), ("gone", "g")]);
    let mut context = HookContext::new(
        unit(),
        HookInfo::unit(HookKind::Start),
        None,
        Arc::new(backend.clone()),
    )
    .unwrap();
    assert!(context.changes().is_empty());
    context.set_state("new", "n");
    context.delete_state("gone");
    let changes = context.take_changes();
    assert!(!changes.is_empty());
    assert_eq!(changes.state["new"].as_deref(), Some("n"));
    assert_eq!(changes.state["gone"], None);
    assert!(
        context.changes().is_empty(),
        "taken changes are not taken again"
    );
    assert_eq!(context.finish(), Changes::default());

    backend.commit(&changes);
    let state = backend.unit_state_now();
    assert_eq!(state.len(), 2);
    assert_eq!((state["keep"].as_str(), state["new"].as_str()), ("k", "n"));
}

#[test]
fn the_settings_snapshot_is_what_config_get_reads() {
    let settings = serde_json::json!({"port": 8080, "name": null});
    let context = HookContext::new(
        unit(),
        HookInfo::unit(HookKind::ConfigChanged),
        None,
        Arc::new(MemoryBackend::new()),
    )
    .unwrap()
    .with_settings(settings.as_object().unwrap().clone());
    assert_eq!(context.settings()["port"], 8080);
    assert!(context.settings()["name"].is_null());
}

fn relation_context(hook: HookInfo, backend: &MemoryBackend) -> HookContext {
    HookContext::new(unit(), hook, Some("db"), Arc::new(backend.clone())).unwrap()
}

fn relation_backend() -> MemoryBackend {
    MemoryBackend::new()
        .with_unit("kv/agent-1")
        .with_relation(4, "db", "pg")
        .with_relation(2, "cache", "redis")
        .with_member(4, "pg/0", [("host", "a")])
        .with_member(4, "pg/1", [("host", "b")])
        .with_relation_settings(4, "kv/agent-1", [("port", "1")])
}

#[tokio::test]
async fn a_relation_hook_knows_its_relation_and_remote_unit() {
    let backend = relation_backend();
    let joined = HookInfo::relation(HookKind::RelationJoined, 4, Some("pg/2".into()), Some(3));
    let context = relation_context(joined, &backend);
    assert_eq!(context.relation_id(), Some(4));
    assert_eq!(context.remote_unit(), Some("pg/2"));
    assert_eq!(context.endpoint(), Some("db"));
    let ids: Vec<_> = context
        .relations()
        .await
        .unwrap()
        .iter()
        .map(|r| r.label())
        .collect();
    assert_eq!(ids, ["cache:2", "db:4"]);
    assert!(context.knows_relation(2).await.unwrap());
    assert!(!context.knows_relation(3).await.unwrap());

    let broken = HookInfo::relation(HookKind::RelationBroken, 9, Some("x/0".into()), None);
    let context = relation_context(broken, &backend);
    assert_eq!(context.remote_unit(), None, "broken is about no unit");
    assert!(
        context.knows_relation(9).await.unwrap(),
        "the hook's own relation, even once the agent dropped it"
    );
    let install = HookContext::new(
        unit(),
        HookInfo::unit(HookKind::Install),
        None,
        Arc::new(backend),
    )
    .unwrap();
    assert_eq!((install.relation_id(), install.remote_unit()), (None, None));
}

#[tokio::test]
async fn membership_is_as_of_the_hook() {
    let backend = relation_backend();
    let members = |kind, unit: &str| {
        let hook = HookInfo::relation(kind, 4, Some(unit.into()), Some(1));
        let context = relation_context(hook, &backend);
        async move { context.relation_members(4).await.unwrap() }
    };
    // The joining unit is a member for its joined (its state commits after).
    assert_eq!(
        members(HookKind::RelationJoined, "pg/2").await,
        ["pg/0", "pg/1", "pg/2"]
    );
    assert_eq!(
        members(HookKind::RelationChanged, "pg/1").await,
        ["pg/0", "pg/1"]
    );
    // The departing unit is not, although its settings are still readable.
    assert_eq!(members(HookKind::RelationDeparted, "pg/1").await, ["pg/0"]);
    let departed = HookInfo::relation(HookKind::RelationDeparted, 4, Some("pg/1".into()), Some(1));
    let context = relation_context(departed, &backend);
    assert_eq!(
        context.relation_settings(4, "pg/1").await.unwrap().unwrap()["host"],
        "b"
    );
    // Other relations are as committed.
    assert!(context.relation_members(2).await.unwrap().is_empty());
}

#[tokio::test]
async fn relation_writes_are_buffered_read_back_and_committed_by_the_agent() {
    let backend = relation_backend();
    let changed = HookInfo::relation(HookKind::RelationChanged, 4, Some("pg/0".into()), Some(1));
    let mut context = relation_context(changed, &backend);
    context
        .set_relation_settings(
            4,
            [
                ("port".to_string(), None),
                ("user".to_string(), Some("kv".to_string())),
            ],
        )
        .unwrap();
    context
        .set_relation_settings(2, [("ttl".to_string(), Some("5".to_string()))])
        .unwrap();
    context.set_relation_settings(2, []).unwrap();
    let own = context
        .relation_settings(4, "kv/agent-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(own, BTreeMap::from([("user".into(), "kv".into())]));
    // A relation the unit has no settings in yet reads as empty plus writes.
    let own = context
        .relation_settings(2, "kv/agent-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(own, BTreeMap::from([("ttl".into(), "5".into())]));
    assert_eq!(context.relation_settings(4, "pg/9").await.unwrap(), None);
    // Nothing reached the backend yet.
    assert_eq!(
        backend.relation_settings_now(4, "kv/agent-1"),
        Some(BTreeMap::from([("port".into(), "1".into())]))
    );

    let changes = context.finish();
    assert!(!changes.is_empty());
    assert_eq!(changes.relation_settings.len(), 2);
    backend.commit(&changes);
    assert_eq!(
        backend.relation_settings_now(4, "kv/agent-1"),
        Some(BTreeMap::from([("user".into(), "kv".into())]))
    );
    assert_eq!(
        backend.relation_settings_now(2, "kv/agent-1"),
        Some(BTreeMap::from([("ttl".into(), "5".into())]))
    );
}

#[test]
fn a_broken_relation_refuses_writes_but_other_relations_take_them() {
    let backend = relation_backend();
    let broken = HookInfo::relation(HookKind::RelationBroken, 4, None, None);
    let mut context = relation_context(broken, &backend);
    let error = context
        .set_relation_settings(4, [("k".to_string(), Some("v".to_string()))])
        .unwrap_err();
    assert!(
        matches!(&error, Error::RelationSetInBroken { relation } if relation == "db:4"),
        "{error:?}"
    );
    assert!(error.to_string().contains("relation-departed"), "{error}");
    context
        .set_relation_settings(2, [("k".to_string(), Some("v".to_string()))])
        .unwrap();
    assert_eq!(
        context
            .changes()
            .relation_settings
            .keys()
            .collect::<Vec<_>>(),
        [&2]
    );
}

#[test]
fn relation_writes_tell_whether_they_change_anything() {
    let mut changes = Changes::default();
    changes.relation_settings.insert(
        4,
        BTreeMap::from([
            ("same".to_string(), Some("1".to_string())),
            ("gone".to_string(), None),
        ]),
    );
    let current = BTreeMap::from([("same".to_string(), "1".to_string())]);
    assert!(
        !changes.changes_relation(4, &current),
        "set to what it is, delete what is not"
    );
    assert!(
        !changes.changes_relation(5, &current),
        "no writes to relation 5"
    );
    let mut settings = current.clone();
    assert!(!changes.apply_relation(4, &mut settings));
    assert_eq!(settings, current);

    let mut other = BTreeMap::from([("same".to_string(), "0".to_string())]);
    assert!(changes.changes_relation(4, &other));
    assert!(changes.apply_relation(4, &mut other));
    assert_eq!(other, current);
    let mut with_gone = BTreeMap::from([("gone".to_string(), "x".to_string())]);
    assert!(changes.changes_relation(4, &with_gone));
    assert!(changes.apply_relation(4, &mut with_gone));
    assert_eq!(with_gone, current);
}

#[test]
fn changes_round_trip_and_leave_out_what_is_empty() {
    let mut changes = Changes::default();
    assert_eq!(
        serde_json::to_value(&changes).unwrap(),
        serde_json::json!({})
    );
    changes.state.insert("a".into(), Some("1".into()));
    changes
        .relation_settings
        .insert(4, BTreeMap::from([("k".to_string(), None)]));
    let json = serde_json::to_value(&changes).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"state": {"a": "1"}, "relation_settings": {"4": {"k": null}}})
    );
    assert_eq!(serde_json::from_value::<Changes>(json).unwrap(), changes);
    assert_eq!(
        serde_json::from_str::<Changes>("{}").unwrap(),
        Changes::default()
    );
}
