//! Rules of the box service, checked against the honest fakes (no root needed).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use zomg_sdk::{BoxStatus, CreateBox, DeleteState, ExecStart, UpdateBox};

use super::test_harness::{Harness, n, p};
use super::*;
use crate::runtime::{RunState, Runtime};
use crate::storage::{Storage, Subvol, SubvolKind};
use crate::store::Store;

/// Few delete retries, so that the tests of a failing cleanup finish fast.
fn harness() -> Harness {
    Harness::new(|settings| settings.delete_attempts = 3)
}

fn create(name: &str) -> CreateBox {
    CreateBox {
        name: name.into(),
        ..Default::default()
    }
}

impl Harness {
    /// Nothing exists besides the base: no records, roots or containers.
    async fn assert_empty(&self) {
        assert!(
            self.store
                .list_boxes(&Default::default())
                .unwrap()
                .is_empty(),
            "records left"
        );
        assert!(
            self.storage.list(SubvolKind::Root).unwrap().is_empty(),
            "roots left"
        );
        assert!(
            self.runtime.list().await.unwrap().is_empty(),
            "containers left"
        );
    }
}

#[tokio::test]
async fn create_runs_the_box_with_its_spec() {
    let h = harness();
    let req = CreateBox {
        environment: [("FOO".to_owned(), "it's".to_owned())].into(),
        tags: [("env".to_owned(), "dev".to_owned())].into(),
        cpus: Some(0.5),
        ram_mb: Some(256),
        storage_gb: Some(2),
        port: Some(8080),
        ..create("web")
    };
    let info = h.svc.create(&p("default"), req).await.unwrap();
    assert_eq!(info.status, BoxStatus::Running);
    assert_eq!(info.base, "box-base:latest");
    assert_eq!(info.config.cpus, 0.5);
    assert_eq!(info.config.ram_mb, 256);
    assert_eq!(info.config.storage_gb, Some(2));
    assert_eq!(info.port, Some(8080));
    assert_eq!(info.termination_grace_period_seconds, 10);

    let fake = h.runtime.snapshot(&info.id).unwrap();
    assert_eq!(fake.spec.hostname, "web.default");
    assert_eq!(fake.spec.resources.millicpus, 500);
    assert_eq!(fake.spec.resources.memory_mb, 256);
    assert_eq!(fake.spec.env["FOO"], "it's");
    assert_eq!(fake.spec.env["BOX_NAME"], "web");
    assert_eq!(fake.spec.env["ZOMG_PROJECT"], "default");
    assert_eq!(fake.spec.env["TERM"], "xterm-256color");
    assert_eq!(fake.spec.env["ZOMG_API_URL"], "http://127.0.0.1:7070");
    assert!(!fake.spec.env.contains_key("ZOMG_INSECURE"));
    assert!(fake.spec.boxes_env_file.contains("export BOX_NAME='web'\n"));
    assert!(fake.spec.boxes_env_file.contains("export FOO='it'\\''s'\n"));
    let root = Subvol::root(&info.id);
    assert!(h.storage.exists(&root));
    assert_eq!(h.storage.limit(&root).unwrap(), Some(2 << 30));
    assert!(
        fake.spec.rootfs.join("etc/os-release").exists(),
        "root is a snapshot of the base"
    );
}

#[tokio::test]
async fn bad_input_is_rejected_and_leaves_nothing() {
    let h = harness();
    let cases: Vec<(CreateBox, &str, &str)> = vec![
        (create("Web"), "invalid_request", "invalid box name \"Web\""),
        (create(""), "invalid_request", "invalid box name \"\""),
        (
            CreateBox {
                environment: [("BOX_NAME".to_owned(), "x".to_owned())].into(),
                ..create("a")
            },
            "reserved_env",
            "environment variable is reserved",
        ),
        (
            CreateBox {
                base: Some("nope".into()),
                ..create("a")
            },
            "base_not_found",
            "base \"nope:latest\" not found",
        ),
        (
            CreateBox {
                cpus: Some(64.0),
                ..create("a")
            },
            "invalid_cpu",
            "cpu 64 is out of range",
        ),
        (
            CreateBox {
                ram_mb: Some(1 << 30),
                ..create("a")
            },
            "invalid_memory",
            "out of range",
        ),
        (
            CreateBox {
                storage_gb: Some(0),
                ..create("a")
            },
            "invalid_storage",
            "out of range",
        ),
        (
            CreateBox {
                port: Some(0),
                ..create("a")
            },
            "invalid_port",
            "port 0 is out of range",
        ),
        (
            CreateBox {
                termination_grace_period_seconds: Some(86_401),
                ..create("a")
            },
            "invalid_request",
            "termination grace",
        ),
        (
            CreateBox {
                tags: [("Bad".to_owned(), "x".to_owned())].into(),
                ..create("a")
            },
            "invalid_request",
            "invalid tag key",
        ),
        (
            CreateBox {
                base: Some("box-base".into()),
                fork: Some("x".into()),
                ..create("a")
            },
            "invalid_request",
            "--base cannot be used with --fork",
        ),
    ];
    for (req, code, msg) in cases {
        let e = h.svc.create(&p("default"), req.clone()).await.unwrap_err();
        assert!(
            matches!(e, CoreError::Invalid { .. } | CoreError::NotFound { .. }),
            "{req:?}: {e:?}"
        );
        assert_eq!(e.code(), code, "{req:?}");
        assert!(
            e.public_message().contains(msg),
            "{req:?}: {}",
            e.public_message()
        );
    }
    h.assert_empty().await;
}

#[tokio::test]
async fn duplicate_name_is_a_conflict_in_the_same_project_only() {
    let h = harness();
    h.svc.create(&p("default"), create("web")).await.unwrap();
    let e = h
        .svc
        .create(&p("default"), create("web"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "box_exists");
    assert_eq!(
        e.public_message(),
        "box \"web\" already exists in project \"default\""
    );
    h.svc.create(&p("other"), create("web")).await.unwrap();
    assert_eq!(h.storage.list(SubvolKind::Root).unwrap().len(), 2);
}

#[tokio::test]
async fn failed_start_leaves_nothing() {
    let h = harness();
    h.runtime.fail_next_start("no tini");
    let e = h
        .svc
        .create(&p("default"), create("web"))
        .await
        .unwrap_err();
    assert!(matches!(e, CoreError::Internal { .. }));
    assert!(
        e.public_message()
            .starts_with("starting box \"web\" failed")
    );
    h.assert_empty().await;
    // The name is free again.
    h.svc.create(&p("default"), create("web")).await.unwrap();
}

#[tokio::test]
async fn stop_resume_keep_the_root() {
    let h = harness();
    let info = h
        .svc
        .create(
            &p("default"),
            CreateBox {
                termination_grace_period_seconds: Some(3),
                ..create("web")
            },
        )
        .await
        .unwrap();
    let root = Subvol::root(&info.id);
    h.storage
        .write_file(&root, "root/file".as_ref(), b"kept")
        .unwrap();
    let stopped = h.svc.stop(&p("default"), &n("web")).await.unwrap();
    assert_eq!(stopped.status, BoxStatus::Stopped);
    assert_eq!(h.runtime.state(&info.id).await.unwrap(), RunState::Missing);
    assert_eq!(
        h.runtime.snapshot(&info.id).unwrap().stops,
        [Duration::from_secs(3)]
    );
    // Idempotent.
    assert_eq!(
        h.svc.stop(&p("default"), &n("web")).await.unwrap().status,
        BoxStatus::Stopped
    );
    let resumed = h.svc.resume(&p("default"), &n("web")).await.unwrap();
    assert_eq!(resumed.status, BoxStatus::Running);
    assert_eq!(h.runtime.snapshot(&info.id).unwrap().starts, 2);
    assert_eq!(
        std::fs::read(h.storage.path(&root).join("root/file")).unwrap(),
        b"kept"
    );
    // Resuming a running box is a no-op.
    h.svc.resume(&p("default"), &n("web")).await.unwrap();
    assert_eq!(h.runtime.snapshot(&info.id).unwrap().starts, 2);
    let e = h.svc.stop(&p("default"), &n("nope")).await.unwrap_err();
    assert_eq!(e.code(), "box_not_found");
}

#[tokio::test]
async fn delete_rules() {
    let h = harness();
    let project = p("default");
    h.svc.create(&project, create("web")).await.unwrap();
    let e = h.svc.delete(&project, &n("web"), false).await.unwrap_err();
    assert!(matches!(e, CoreError::Conflict { .. }));
    assert_eq!(e.code(), "box_running");
    assert_eq!(e.public_message(), "box is running");
    assert_eq!(
        h.svc.delete_status(&project, &n("web")).unwrap().status,
        DeleteState::Active
    );

    let d = h.svc.delete(&project, &n("web"), true).await.unwrap();
    assert_eq!(d.status, DeleteState::Deleted);
    assert_eq!(d.name, "web");
    assert_eq!(
        h.svc.delete_status(&project, &n("web")).unwrap().status,
        DeleteState::Deleted
    );
    // Idempotent.
    assert_eq!(
        h.svc
            .delete(&project, &n("web"), false)
            .await
            .unwrap()
            .status,
        DeleteState::Deleted
    );
    h.assert_empty().await;

    // A stopped box needs no force.
    h.svc.create(&project, create("db")).await.unwrap();
    h.svc.stop(&project, &n("db")).await.unwrap();
    assert_eq!(
        h.svc
            .delete(&project, &n("db"), false)
            .await
            .unwrap()
            .status,
        DeleteState::Deleted
    );
    h.assert_empty().await;
}

#[tokio::test]
async fn delete_retries_in_the_background_until_cleanup_works() {
    let h = harness();
    let project = p("default");
    let info = h.svc.create(&project, create("web")).await.unwrap();
    let root = Subvol::root(&info.id);
    h.storage.set_busy(&root, true);
    let d = h.svc.delete(&project, &n("web"), true).await.unwrap();
    assert_eq!(d.status, DeleteState::Deleting);
    assert!(d.message.unwrap().contains("deleting the root filesystem"));
    assert_eq!(
        h.svc.delete_status(&project, &n("web")).unwrap().status,
        DeleteState::Deleting
    );
    assert_eq!(
        h.svc.get(&project, &n("web")).await.unwrap().status,
        BoxStatus::Deleting
    );
    // A second delete while one is pending reports progress instead of starting over.
    assert_eq!(
        h.svc
            .delete(&project, &n("web"), true)
            .await
            .unwrap()
            .status,
        DeleteState::Deleting
    );
    h.storage.set_busy(&root, false);
    let status = zomg_sdk::poll_until("delete", Duration::from_secs(5), || async {
        let s = h.svc.delete_status(&project, &n("web")).unwrap();
        Ok((s.status == DeleteState::Deleted).then_some(s))
    })
    .await
    .unwrap();
    assert_eq!(status.status, DeleteState::Deleted);
    h.assert_empty().await;
}

#[tokio::test]
async fn delete_reports_failed_after_the_last_retry_and_can_be_retried() {
    let h = harness();
    let project = p("default");
    let info = h.svc.create(&project, create("web")).await.unwrap();
    let root = Subvol::root(&info.id);
    h.storage.set_busy(&root, true);
    h.svc.delete(&project, &n("web"), true).await.unwrap();
    let failed = zomg_sdk::poll_until("delete to fail", Duration::from_secs(5), || async {
        let s = h.svc.delete_status(&project, &n("web")).unwrap();
        Ok((s.status == DeleteState::Failed).then_some(s))
    })
    .await
    .unwrap();
    assert!(failed.message.unwrap().contains("busy"));
    let b = h.svc.get(&project, &n("web")).await.unwrap();
    assert_eq!(b.status, BoxStatus::Deleting);
    assert!(b.status_reason.is_some());
    // Once the cause is repaired, a new delete starts over and finishes.
    h.storage.set_busy(&root, false);
    assert_eq!(
        h.svc
            .delete(&project, &n("web"), true)
            .await
            .unwrap()
            .status,
        DeleteState::Deleted
    );
    h.assert_empty().await;
}

#[tokio::test]
async fn update_applies_only_the_allowlist() {
    let h = harness();
    let project = p("default");
    let info = h.svc.create(&project, create("web")).await.unwrap();
    let env = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let e = h
        .svc
        .update(
            &project,
            &n("web"),
            UpdateBox {
                environment: env(&[("FOO", "1")]),
                tags: BTreeMap::new(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "no_updates");
    assert_eq!(e.public_message(), "no updates provided");

    let u = h
        .svc
        .update(
            &project,
            &n("web"),
            UpdateBox {
                environment: env(&[
                    ("MEMORY", "512M"),
                    ("CPU", "250m"),
                    ("PORT", "3000"),
                    ("TERMINATION_GRACE_SECONDS", "5"),
                    ("FOO", "dropped"),
                ]),
                tags: env(&[("team", "core")]),
            },
        )
        .await
        .unwrap();
    assert_eq!(u.config.ram_mb, 512);
    assert_eq!(u.config.cpus, 0.25);
    assert_eq!(u.port, Some(3000));
    assert_eq!(u.termination_grace_period_seconds, 5);
    assert_eq!(u.tags["team"], "core");
    assert!(
        !u.environment.contains_key("FOO"),
        "update never changes the environment"
    );
    let live = h
        .runtime
        .snapshot(&info.id)
        .unwrap()
        .container
        .unwrap()
        .resources;
    assert_eq!((live.memory_mb, live.millicpus), (512, 250), "applied live");
    // Persisted for the next start.
    h.svc.stop(&project, &n("web")).await.unwrap();
    h.svc.resume(&project, &n("web")).await.unwrap();
    let fake = h.runtime.snapshot(&info.id).unwrap();
    assert_eq!(fake.spec.resources.memory_mb, 512);

    let e = h
        .svc
        .update(
            &project,
            &n("web"),
            UpdateBox {
                environment: env(&[("PORT", "70000")]),
                tags: BTreeMap::new(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_port");
}

#[tokio::test]
async fn list_pages_and_filters() {
    let h = harness();
    for (proj, name, role) in [
        ("a", "w1", "web"),
        ("a", "w2", "web"),
        ("a", "db", "db"),
        ("b", "w1", "web"),
    ] {
        h.svc
            .create(
                &p(proj),
                CreateBox {
                    tags: [("role".to_owned(), role.to_owned())].into(),
                    ..create(name)
                },
            )
            .await
            .unwrap();
    }
    let names = |l: &zomg_sdk::BoxList| {
        l.boxes
            .iter()
            .map(|b| format!("{}:{}", b.project, b.name))
            .collect::<Vec<_>>()
    };
    let all = h.svc.list(&ListQuery::default()).unwrap();
    assert_eq!(names(&all), ["a:db", "a:w1", "a:w2", "b:w1"]);
    assert!(!all.has_more);
    let first = h
        .svc
        .list(&ListQuery {
            max_results: Some(3),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(names(&first), ["a:db", "a:w1", "a:w2"]);
    assert!(first.has_more);
    let second = h
        .svc
        .list(&ListQuery {
            max_results: Some(3),
            continuation_token: first.next_continuation_token.clone(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(names(&second), ["b:w1"]);
    assert!(!second.has_more);
    let web_in_a = h
        .svc
        .list(&ListQuery {
            project: Some(p("a")),
            tags: [("role".to_owned(), "web".to_owned())].into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(names(&web_in_a), ["a:w1", "a:w2"]);
    assert!(
        h.svc
            .list(&ListQuery {
                max_results: Some(0),
                ..Default::default()
            })
            .is_err()
    );
    assert!(
        h.svc
            .list(&ListQuery {
                continuation_token: Some("junk".into()),
                ..Default::default()
            })
            .is_err()
    );
}

#[tokio::test]
async fn exec_needs_a_running_box_and_known_users() {
    let h = harness();
    let project = p("default");
    h.svc.create(&project, create("web")).await.unwrap();
    let start = |cmd: &[&str]| ExecStart {
        command: cmd.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let e = h
        .svc
        .exec(
            &project,
            &n("web"),
            ExecStart {
                user: Some("alice".into()),
                ..start(&["true"])
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "user_not_found");
    let e = h
        .svc
        .exec(&project, &n("web"), start(&[]))
        .await
        .unwrap_err();
    assert_eq!(e.public_message(), "command is empty");
    let p1 = h
        .svc
        .exec(&project, &n("web"), start(&["exit", "3"]))
        .await
        .unwrap();
    assert_eq!(p1.wait.await.unwrap().code(), 3);
    h.svc.stop(&project, &n("web")).await.unwrap();
    let e = h
        .svc
        .exec(&project, &n("web"), start(&["true"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "box_not_running");
}

#[tokio::test]
async fn reconcile_repairs_what_the_store_and_runtime_disagree_on() {
    let h = harness();
    let project = p("default");
    let crashed = h.svc.create(&project, create("crashed")).await.unwrap();
    let healthy = h.svc.create(&project, create("healthy")).await.unwrap();
    h.runtime.crash(&crashed.id);

    // A create that died half-way: record `creating`, root present, no container.
    let mut half = h.store.get_box("default", "healthy").unwrap().unwrap();
    half.id = "b-half".into();
    half.name = n("half");
    half.status = BoxStatus::Creating;
    h.store.insert_box(&half).unwrap();
    h.storage
        .snapshot(
            &Subvol::base("box-base", "latest"),
            &Subvol::root("b-half"),
            false,
        )
        .unwrap();

    // A stop that died half-way.
    let stopping = h.svc.create(&project, create("stopping")).await.unwrap();
    let mut rec = h.store.get_box_by_id(&stopping.id).unwrap().unwrap();
    rec.status = BoxStatus::Stopping;
    h.store.update_box(&rec).unwrap();

    // Orphans: a root and a container nobody owns.
    h.storage
        .snapshot(
            &Subvol::base("box-base", "latest"),
            &Subvol::root("b-orphan"),
            false,
        )
        .unwrap();
    let mut orphan_spec = h.runtime.snapshot(&healthy.id).unwrap().spec;
    orphan_spec.id = "b-ghost".into();
    h.runtime.start(&orphan_spec).await.unwrap();

    let report = h.svc.reconcile().await.unwrap();
    assert_eq!(report.restarted, ["default:crashed"]);
    assert_eq!(report.removed_incomplete, ["default:half"]);
    assert_eq!(report.finished_stops, ["default:stopping"]);
    assert_eq!(report.orphan_containers, ["b-ghost"]);
    assert_eq!(report.orphan_roots, ["b-orphan"]);
    assert!(matches!(
        h.runtime.state(&crashed.id).await.unwrap(),
        RunState::Running { .. }
    ));
    assert!(h.store.get_box("default", "half").unwrap().is_none());
    assert_eq!(
        h.svc.get(&project, &n("stopping")).await.unwrap().status,
        BoxStatus::Stopped
    );
    assert!(!h.storage.exists(&Subvol::root("b-orphan")));
    assert_eq!(h.runtime.state("b-ghost").await.unwrap(), RunState::Missing);
    // A second pass finds nothing to do.
    let again = h.svc.reconcile().await.unwrap();
    assert_eq!(again, ReconcileReport::default());
}

#[tokio::test]
async fn reconcile_marks_boxes_that_cannot_start_failed() {
    let h = harness();
    let project = p("default");
    let info = h.svc.create(&project, create("web")).await.unwrap();
    h.runtime.crash(&info.id);
    h.runtime.fail_next_start("tini is gone");
    let report = h.svc.reconcile().await.unwrap();
    assert_eq!(report.failed, ["default:web"]);
    let b = h.svc.get(&project, &n("web")).await.unwrap();
    assert_eq!(b.status, BoxStatus::Failed);
    assert!(b.status_reason.unwrap().contains("tini is gone"));
    // resume is the way out of `failed`.
    assert_eq!(
        h.svc.resume(&project, &n("web")).await.unwrap().status,
        BoxStatus::Running
    );
}

#[tokio::test]
async fn reconcile_resumes_pending_deletes() {
    let h = harness();
    let project = p("default");
    let info = h.svc.create(&project, create("web")).await.unwrap();
    let root = Subvol::root(&info.id);
    h.storage.set_busy(&root, true);
    h.svc.delete(&project, &n("web"), true).await.unwrap();
    // "Restart": a new service over the same backends.
    let svc2 = BoxService::new(
        h.store.clone(),
        h.storage.clone(),
        Arc::new(h.runtime.clone()),
        h.svc.settings().clone(),
    );
    h.storage.set_busy(&root, false);
    let report = svc2.reconcile().await.unwrap();
    assert_eq!(report.resumed_deletes, ["default:web"]);
    zomg_sdk::poll_until("delete", Duration::from_secs(5), || async {
        Ok(
            (svc2.delete_status(&project, &n("web")).unwrap().status == DeleteState::Deleted)
                .then_some(()),
        )
    })
    .await
    .unwrap();
    h.assert_empty().await;
}
