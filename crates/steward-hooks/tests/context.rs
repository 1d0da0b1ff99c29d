//! `HookContext`: construction rules, what a hook sees of the unit state
//! (its own buffered writes first), and the changes handed to the agent.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

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
