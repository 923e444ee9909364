//! Rules of data volumes, `--data` mounts and `--fork`, checked against the honest fakes.

use zomg_sdk::{BoxStatus, CreateBox, CreateVolume, DataMountSpec, DeleteState, VolumeName};

use super::test_harness::{Harness, n, p};
use super::*;
use crate::runtime::Runtime;
use crate::storage::{Storage, Subvol, SubvolKind};
use crate::store::Store;

fn harness() -> Harness {
    Harness::new(|_| {})
}

fn v(s: &str) -> VolumeName {
    s.parse().unwrap()
}

fn vol(name: &str) -> CreateVolume {
    CreateVolume {
        name: name.into(),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> DataMountSpec {
    DataMountSpec {
        name: v(name),
        path: path.into(),
        read_only,
    }
}

fn create(name: &str, mounts: Vec<DataMountSpec>) -> CreateBox {
    CreateBox {
        name: name.into(),
        data_mounts: mounts,
        ..Default::default()
    }
}

fn fork(name: &str, source: &str) -> CreateBox {
    CreateBox {
        name: name.into(),
        fork: Some(source.into()),
        ..Default::default()
    }
}

impl Harness {
    /// Every volume record (owned ones included) and every volume subvolume, as names.
    fn volume_state(&self) -> (Vec<String>, Vec<String>) {
        let records = self
            .store
            .list_volumes(None)
            .unwrap()
            .into_iter()
            .map(|v| v.name.to_string())
            .collect();
        let subvols = self
            .storage
            .list(SubvolKind::Volume)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        (records, subvols)
    }

    fn write(&self, sub: &Subvol, file: &str, data: &[u8]) {
        self.storage.write_file(sub, file.as_ref(), data).unwrap();
    }

    fn read(&self, sub: &Subvol, file: &str) -> Option<String> {
        std::fs::read_to_string(self.storage.path(sub).join(file)).ok()
    }

    fn volume_id(&self, name: &str) -> String {
        self.store
            .get_volume("default", name)
            .unwrap()
            .unwrap_or_else(|| panic!("no volume {name}"))
            .id
    }
}

#[tokio::test]
async fn volume_lifecycle() {
    let h = harness();
    let project = p("default");
    let info = h
        .svc
        .create_volume(
            &project,
            CreateVolume {
                size_gb: Some(2),
                ..vol("cache")
            },
        )
        .await
        .unwrap();
    assert_eq!(info.name.as_str(), "cache");
    assert_eq!(info.size_gb, Some(2));
    assert_eq!(info.used_bytes, Some(0));
    assert!(info.attached_to.is_empty());
    let sub = Subvol::volume(&info.id);
    assert_eq!(h.storage.limit(&sub).unwrap(), Some(2 << 30));
    h.write(&sub, "a.txt", b"hello");

    let e = h
        .svc
        .create_volume(&project, vol("cache"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "volume_exists");
    assert_eq!(
        e.to_string(),
        "volume \"cache\" already exists in project \"default\""
    );
    // The same name in another project is another volume.
    h.svc
        .create_volume(&p("other"), vol("cache"))
        .await
        .unwrap();

    // --from copies the data and the limit; the copy is independent.
    let copy = h
        .svc
        .create_volume(
            &project,
            CreateVolume {
                from: Some("cache".into()),
                ..vol("cache.2")
            },
        )
        .await
        .unwrap();
    assert_eq!(copy.size_gb, Some(2));
    assert_eq!(copy.used_bytes, Some(5));
    let copy_sub = Subvol::volume(&copy.id);
    assert_eq!(h.read(&copy_sub, "a.txt").as_deref(), Some("hello"));
    assert_eq!(h.storage.limit(&copy_sub).unwrap(), Some(2 << 30));
    h.write(&copy_sub, "a.txt", b"changed");
    assert_eq!(h.read(&sub, "a.txt").as_deref(), Some("hello"));
    let resized = h
        .svc
        .create_volume(
            &project,
            CreateVolume {
                from: Some("cache".into()),
                size_gb: Some(5),
                ..vol("cache-big")
            },
        )
        .await
        .unwrap();
    assert_eq!(resized.size_gb, Some(5));
    assert_eq!(
        h.storage.limit(&Subvol::volume(&resized.id)).unwrap(),
        Some(5 << 30)
    );

    let list = h.svc.list_volumes(&project).await.unwrap().volumes;
    let names: Vec<&str> = list.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["cache", "cache-big", "cache.2"]);
    let shown = h.svc.get_volume(&project, &v("cache")).await.unwrap();
    assert_eq!(shown.used_bytes, Some(5));

    h.svc.delete_volume(&project, &v("cache.2")).await.unwrap();
    assert!(!h.storage.exists(&copy_sub), "subvolume deleted");
    let e = h
        .svc
        .delete_volume(&project, &v("cache.2"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "volume_not_found");
    assert_eq!(
        e.to_string(),
        "volume \"cache.2\" not found in project \"default\" (see `zomg data list`)"
    );
    let e = h.svc.get_volume(&project, &v("nope")).await.unwrap_err();
    assert_eq!(e.code(), "volume_not_found");
}

#[tokio::test]
async fn bad_volume_requests_leave_nothing() {
    let h = harness();
    let project = p("default");
    let cases: Vec<(CreateVolume, &str, &str)> = vec![
        (vol("a/b"), "invalid_request", "invalid volume name \"a/b\""),
        (vol(""), "invalid_request", "invalid volume name \"\""),
        (
            vol("box-web-0123456789ab"),
            "invalid_request",
            "volume name \"box-web-0123456789ab\" is reserved",
        ),
        (
            CreateVolume {
                size_gb: Some(0),
                ..vol("x")
            },
            "invalid_size",
            "size 0GB is out of range",
        ),
        (
            CreateVolume {
                from: Some("missing".into()),
                ..vol("x")
            },
            "volume_not_found",
            "volume \"missing\" not found",
        ),
        (
            CreateVolume {
                from: Some("../x".into()),
                ..vol("x")
            },
            "invalid_request",
            "invalid volume name \"../x\"",
        ),
    ];
    for (req, code, message) in cases {
        let e = h.svc.create_volume(&project, req).await.unwrap_err();
        assert_eq!(e.code(), code, "{e}");
        assert!(e.to_string().starts_with(message), "{e}");
    }
    assert_eq!(h.volume_state(), (vec![], vec![]));
}

#[tokio::test]
async fn data_mounts_are_checked_attached_and_block_deletes() {
    let h = harness();
    let project = p("default");
    for name in ["cache", "logs"] {
        h.svc.create_volume(&project, vol(name)).await.unwrap();
    }
    h.svc
        .create_volume(&p("other"), vol("foreign"))
        .await
        .unwrap();
    let bad: Vec<(Vec<DataMountSpec>, &str, &str)> = vec![
        (
            vec![mount("cache", "data", false)],
            "invalid_mount_path",
            "invalid mount path \"data\": must be absolute",
        ),
        (
            vec![mount("cache", "/", false)],
            "invalid_mount_path",
            "invalid mount path \"/\": cannot be /",
        ),
        (
            vec![mount("cache", "/etc/app", false)],
            "invalid_mount_path",
            "invalid mount path \"/etc/app\": cannot be /etc or sit under it",
        ),
        (
            vec![mount("cache", "/data/../home", false)],
            "invalid_mount_path",
            "invalid mount path \"/data/../home\": must not contain \"..\"",
        ),
        (
            vec![mount("nope", "/data", false)],
            "volume_not_found",
            "volume \"nope\" not found in project \"default\"",
        ),
        (
            vec![mount("foreign", "/data", false)],
            "volume_not_found",
            "volume \"foreign\" not found in project \"default\"",
        ),
        (
            vec![mount("cache", "/a", false), mount("cache", "/b", true)],
            "duplicate_mount",
            "volume \"cache\" is mounted twice",
        ),
        (
            vec![
                mount("cache", "/data", false),
                mount("logs", "//data/", false),
            ],
            "duplicate_mount",
            "two mounts use the path \"/data\"",
        ),
    ];
    for (mounts, code, message) in bad {
        let e = h
            .svc
            .create(&project, create("web", mounts))
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{e}");
        assert!(e.to_string().starts_with(message), "{e}");
    }
    assert!(h.store.list_boxes(&Default::default()).unwrap().is_empty());
    assert!(h.storage.list(SubvolKind::Root).unwrap().is_empty());

    let info = h
        .svc
        .create(
            &project,
            create(
                "web",
                vec![
                    mount("logs", "/data/logs/", true),
                    mount("cache", "/data", false),
                ],
            ),
        )
        .await
        .unwrap();
    let mounts: Vec<(&str, &str, bool)> = info
        .data_mounts
        .iter()
        .map(|m| (m.name.as_str(), m.path.as_str(), m.read_only))
        .collect();
    assert_eq!(
        mounts,
        [("logs", "/data/logs", true), ("cache", "/data", false)]
    );
    // The runtime mounts the parent first, each from its volume's subvolume.
    let spec = h.runtime.snapshot(&info.id).unwrap().spec;
    let runtime_mounts: Vec<(&str, bool)> = spec
        .mounts
        .iter()
        .map(|m| (m.destination.as_str(), m.read_only))
        .collect();
    assert_eq!(runtime_mounts, [("/data", false), ("/data/logs", true)]);
    assert_eq!(
        spec.mounts[0].source,
        h.storage.path(&Subvol::volume(&h.volume_id("cache")))
    );
    h.svc
        .create(
            &project,
            create("db", vec![mount("cache", "/srv/cache", true)]),
        )
        .await
        .unwrap();

    let cache = h.svc.get_volume(&project, &v("cache")).await.unwrap();
    assert_eq!(cache.attached_to, ["db", "web"]);
    let e = h
        .svc
        .delete_volume(&project, &v("cache"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "volume_in_use");
    assert_eq!(
        e.to_string(),
        "volume \"cache\" is attached to boxes \"db\", \"web\": delete the boxes first"
    );
    h.svc.delete(&project, &n("db"), true).await.unwrap();
    let e = h.svc.delete_volume(&project, &v("logs")).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "volume \"logs\" is attached to box \"web\": delete the box first"
    );
    h.svc.delete(&project, &n("web"), true).await.unwrap();
    // Deleting a box leaves the data volumes it used.
    assert_eq!(h.svc.list_volumes(&project).await.unwrap().volumes.len(), 2);
    h.svc.delete_volume(&project, &v("cache")).await.unwrap();
    h.svc.delete_volume(&project, &v("logs")).await.unwrap();
}

/// A source box `src` with two volumes and some settings, with files in its root and both
/// volumes.
async fn forkable(h: &Harness) -> zomg_sdk::BoxInfo {
    let project = p("default");
    h.svc
        .create_volume(
            &project,
            CreateVolume {
                size_gb: Some(3),
                ..vol("data")
            },
        )
        .await
        .unwrap();
    h.svc.create_volume(&project, vol("ref")).await.unwrap();
    let src = h
        .svc
        .create(
            &project,
            CreateBox {
                environment: [
                    ("A".to_owned(), "1".to_owned()),
                    ("B".to_owned(), "2".to_owned()),
                ]
                .into(),
                tags: [("team".to_owned(), "core".to_owned())].into(),
                cpus: Some(0.5),
                ram_mb: Some(256),
                storage_gb: Some(4),
                port: Some(8080),
                termination_grace_period_seconds: Some(3),
                ..create(
                    "src",
                    vec![mount("data", "/data", false), mount("ref", "/ref", true)],
                )
            },
        )
        .await
        .unwrap();
    h.write(&Subvol::root(&src.id), "root.txt", b"root");
    h.write(&Subvol::volume(&h.volume_id("data")), "d.txt", b"data");
    h.write(&Subvol::volume(&h.volume_id("ref")), "r.txt", b"ref");
    src
}

#[tokio::test]
async fn fork_copies_root_volumes_and_settings() {
    let h = harness();
    let project = p("default");
    let src = forkable(&h).await;
    let clone = h
        .svc
        .create(
            &project,
            CreateBox {
                environment: [("B".to_owned(), "override".to_owned())].into(),
                tags: [("env".to_owned(), "dev".to_owned())].into(),
                ..fork("clone", "src")
            },
        )
        .await
        .unwrap();
    assert_eq!(clone.status, BoxStatus::Running);
    assert_eq!(clone.base, src.base);
    assert_eq!(clone.forked_from.as_deref(), Some("default:src"));
    assert_eq!(clone.config, src.config);
    assert_eq!(clone.port, Some(8080));
    assert_eq!(clone.termination_grace_period_seconds, 3);
    assert_eq!(clone.environment["A"], "1");
    assert_eq!(clone.environment["B"], "override");
    assert_eq!(clone.tags["team"], "core");
    assert_eq!(clone.tags["env"], "dev");
    let fake = h.runtime.snapshot(&clone.id).unwrap();
    assert_eq!(fake.spec.env["BOX_NAME"], "clone");
    assert_eq!(fake.spec.env["B"], "override");

    // Root and volumes are copies; the clone's volumes are generated and owned.
    let clone_root = Subvol::root(&clone.id);
    assert_eq!(h.read(&clone_root, "root.txt").as_deref(), Some("root"));
    assert_eq!(h.storage.limit(&clone_root).unwrap(), Some(4 << 30));
    assert_eq!(clone.data_mounts.len(), 2);
    for (m, (path, ro, file, content)) in clone.data_mounts.iter().zip([
        ("/data", false, "d.txt", "data"),
        ("/ref", true, "r.txt", "ref"),
    ]) {
        assert!(
            super::volumes::is_fork_volume_name(m.name.as_str())
                && m.name.as_str().starts_with("box-clone-"),
            "{}",
            m.name
        );
        assert_eq!((m.path.as_str(), m.read_only), (path, ro));
        let rec = h
            .store
            .get_volume("default", m.name.as_str())
            .unwrap()
            .unwrap();
        assert_eq!(rec.owner_box_id.as_deref(), Some(clone.id.as_str()));
        assert_eq!(
            h.read(&Subvol::volume(&rec.id), file).as_deref(),
            Some(content)
        );
    }
    let data_copy = h
        .store
        .get_volume("default", clone.data_mounts[0].name.as_str())
        .unwrap()
        .unwrap();
    assert_eq!(data_copy.size_gb, Some(3));
    // Writes on either side stay there.
    h.write(&Subvol::volume(&data_copy.id), "d.txt", b"clone");
    h.write(&Subvol::root(&src.id), "root.txt", b"src2");
    assert_eq!(
        h.read(&Subvol::volume(&h.volume_id("data")), "d.txt")
            .as_deref(),
        Some("data")
    );
    assert_eq!(h.read(&clone_root, "root.txt").as_deref(), Some("root"));

    // The running source was frozen once for its three snapshots, and thawed.
    let src_container = h.runtime.snapshot(&src.id).unwrap().container.unwrap();
    assert_eq!(src_container.freezes, 1);
    assert!(!src_container.frozen);

    // Owned volumes are hidden: not listed, not shown, attached or deleted on their own.
    let listed: Vec<String> = h
        .svc
        .list_volumes(&project)
        .await
        .unwrap()
        .volumes
        .into_iter()
        .map(|v| v.name.to_string())
        .collect();
    assert_eq!(listed, ["data", "ref"]);
    let owned = clone.data_mounts[0].name.clone();
    let e = h.svc.get_volume(&project, &owned).await.unwrap_err();
    assert_eq!(e.code(), "volume_owned");
    let e = h.svc.delete_volume(&project, &owned).await.unwrap_err();
    assert_eq!(e.code(), "volume_owned");
    let e = h
        .svc
        .create(
            &project,
            create("thief", vec![mount(owned.as_str(), "/x", false)]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "volume_owned");
    assert_eq!(
        e.to_string(),
        format!(
            "volume \"{owned}\" belongs to box \"clone\" (a fork's copy of a volume) and cannot be attached to another box"
        )
    );
    assert!(h.store.get_box("default", "thief").unwrap().is_none());
    // ...but their data can be kept as a volume of its own.
    let kept = h
        .svc
        .create_volume(
            &project,
            CreateVolume {
                from: Some(owned.to_string()),
                ..vol("kept")
            },
        )
        .await
        .unwrap();
    assert_eq!(
        h.read(&Subvol::volume(&kept.id), "d.txt").as_deref(),
        Some("clone")
    );

    // The source's volumes are attached to the source only.
    let e = h.svc.delete_volume(&project, &v("data")).await.unwrap_err();
    assert_eq!(e.code(), "volume_in_use");

    // Deleting the clone deletes its volumes, not the source's.
    let before = h.volume_state();
    assert_eq!(
        h.svc
            .delete(&project, &n("clone"), true)
            .await
            .unwrap()
            .status,
        DeleteState::Deleted
    );
    let after = h.volume_state();
    assert_eq!(after.0.len(), before.0.len() - 2);
    assert_eq!(after.1.len(), before.1.len() - 2);
    assert!(
        !after.0.iter().any(|n| n.starts_with("box-clone-")),
        "{after:?}"
    );
}

#[tokio::test]
async fn deleting_the_source_leaves_the_fork() {
    let h = harness();
    let project = p("default");
    forkable(&h).await;
    let clone = h.svc.create(&project, fork("clone", "src")).await.unwrap();
    h.svc.delete(&project, &n("src"), true).await.unwrap();
    let clone_root = Subvol::root(&clone.id);
    assert_eq!(h.read(&clone_root, "root.txt").as_deref(), Some("root"));
    let shown = h.svc.get(&project, &n("clone")).await.unwrap();
    assert_eq!(shown.data_mounts.len(), 2);
    for m in &shown.data_mounts {
        let rec = h
            .store
            .get_volume("default", m.name.as_str())
            .unwrap()
            .unwrap();
        assert!(h.storage.exists(&Subvol::volume(&rec.id)));
    }
    // A fork of the fork copies the copies.
    let grandchild = h.svc.create(&project, fork("gc", "clone")).await.unwrap();
    assert_eq!(grandchild.data_mounts.len(), 2);
    assert_eq!(grandchild.forked_from.as_deref(), Some("default:clone"));
    let gc_data = h
        .store
        .get_volume("default", grandchild.data_mounts[0].name.as_str())
        .unwrap()
        .unwrap();
    assert_eq!(
        h.read(&Subvol::volume(&gc_data.id), "d.txt").as_deref(),
        Some("data")
    );
}

#[tokio::test]
async fn fork_overrides_extra_mounts_and_stopped_sources() {
    let h = harness();
    let project = p("default");
    let src = forkable(&h).await;
    h.svc.stop(&project, &n("src")).await.unwrap();
    h.svc.create_volume(&project, vol("extra")).await.unwrap();
    let clone = h
        .svc
        .create(
            &project,
            CreateBox {
                cpus: Some(2.0),
                ram_mb: Some(1024),
                storage_gb: Some(8),
                port: Some(3000),
                data_mounts: vec![mount("extra", "/extra", true)],
                ..fork("clone", "src")
            },
        )
        .await
        .unwrap();
    assert_eq!(clone.config.cpus, 2.0);
    assert_eq!(clone.config.ram_mb, 1024);
    assert_eq!(clone.config.storage_gb, Some(8));
    assert_eq!(clone.port, Some(3000));
    assert_eq!(
        h.storage.limit(&Subvol::root(&clone.id)).unwrap(),
        Some(8 << 30)
    );
    let paths: Vec<&str> = clone.data_mounts.iter().map(|m| m.path.as_str()).collect();
    assert_eq!(paths, ["/data", "/ref", "/extra"]);
    assert_eq!(clone.data_mounts[2].name.as_str(), "extra");
    // A stopped source is not frozen (it has no processes) and stays stopped.
    assert!(h.runtime.snapshot(&src.id).unwrap().container.is_none());
    assert_eq!(
        h.svc.get(&project, &n("src")).await.unwrap().status,
        BoxStatus::Stopped
    );
    // Inherited mount paths count for uniqueness.
    let e = h
        .svc
        .create(
            &project,
            CreateBox {
                data_mounts: vec![mount("extra", "/data", false)],
                ..fork("clone2", "src")
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "duplicate_mount");
}

#[tokio::test]
async fn bad_forks_leave_nothing() {
    let h = harness();
    let project = p("default");
    forkable(&h).await;
    let state = h.volume_state();
    let boxes = h.store.list_boxes(&Default::default()).unwrap().len();
    let roots = h.storage.list(SubvolKind::Root).unwrap().len();
    let cases: Vec<(CreateBox, &str, &str)> = vec![
        (
            CreateBox {
                base: Some("box-base".into()),
                ..fork("clone", "src")
            },
            "invalid_request",
            "--base cannot be used with --fork",
        ),
        (
            fork("src", "src"),
            "fork_self",
            "box \"src\" cannot be cloned from itself",
        ),
        (
            fork("clone", "ghost"),
            "box_not_found",
            "cannot fork box \"ghost\": it does not exist in project \"default\"",
        ),
        (
            fork("clone", "Bad"),
            "invalid_request",
            "cannot fork: invalid box name \"Bad\"",
        ),
        (
            fork("src", "clone"),
            "box_not_found",
            "cannot fork box \"clone\"",
        ),
        (
            CreateBox {
                environment: [("BOX_NAME".to_owned(), "x".to_owned())].into(),
                ..fork("clone", "src")
            },
            "reserved_env",
            "environment variable is reserved: BOX_NAME",
        ),
        (
            CreateBox {
                data_mounts: vec![mount("nope", "/x", false)],
                ..fork("clone", "src")
            },
            "volume_not_found",
            "volume \"nope\" not found",
        ),
    ];
    for (req, code, message) in cases {
        let e = h.svc.create(&project, req).await.unwrap_err();
        assert_eq!(e.code(), code, "{e}");
        assert!(e.to_string().starts_with(message), "{e}");
    }
    // Forking onto an existing name.
    h.svc
        .create(&project, create("taken", vec![]))
        .await
        .unwrap();
    let e = h
        .svc
        .create(&project, fork("taken", "src"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "box_exists");
    h.svc.delete(&project, &n("taken"), true).await.unwrap();
    // A start failure removes the clone's root, volumes and record.
    h.runtime.fail_next_start("boom");
    let e = h
        .svc
        .create(&project, fork("clone", "src"))
        .await
        .unwrap_err();
    assert!(matches!(e, CoreError::Internal { .. }), "{e}");
    assert_eq!(h.volume_state(), state);
    assert_eq!(
        h.store.list_boxes(&Default::default()).unwrap().len(),
        boxes
    );
    assert_eq!(h.storage.list(SubvolKind::Root).unwrap().len(), roots);
    assert_eq!(h.runtime.list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn concurrent_forks_of_each_other_do_not_deadlock() {
    let h = harness();
    let project = p("default");
    h.svc.create(&project, create("a", vec![])).await.unwrap();
    h.svc.create(&project, create("b", vec![])).await.unwrap();
    for _ in 0..20 {
        let (x, y) = tokio::join!(
            h.svc.create(&project, fork("a", "b")),
            h.svc.create(&project, fork("b", "a"))
        );
        assert_eq!(x.unwrap_err().code(), "box_exists");
        assert_eq!(y.unwrap_err().code(), "box_exists");
    }
    // A fork racing the delete of its source either copies it or finds it gone.
    for i in 0..10 {
        let src = format!("s{i}");
        h.svc.create(&project, create(&src, vec![])).await.unwrap();
        let name = format!("c{i}");
        let src_name = n(&src);
        let (forked, deleted) = tokio::join!(
            h.svc.create(&project, fork(&name, &src)),
            h.svc.delete(&project, &src_name, true)
        );
        assert_eq!(deleted.unwrap().status, DeleteState::Deleted);
        match forked {
            Ok(b) => assert_eq!(b.status, BoxStatus::Running),
            Err(e) => assert_eq!(e.code(), "box_not_found"),
        }
    }
}

#[tokio::test]
async fn storage_limit_must_leave_room_above_the_base() {
    let h = harness();
    let project = p("default");
    let base = Subvol::base("box-base", "latest");
    // A 1.5 GiB base: sparse for the fake, which counts file sizes.
    std::fs::File::create(h.storage.path(&base).join("big"))
        .unwrap()
        .set_len(3 << 29)
        .unwrap();
    let e = h
        .svc
        .create(
            &project,
            CreateBox {
                storage_gb: Some(1),
                ..create("web", vec![])
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_storage");
    assert_eq!(
        e.to_string(),
        "storage 1GB is too small: base \"box-base:latest\" already takes 1.5 GiB"
    );
    assert!(h.store.list_boxes(&Default::default()).unwrap().is_empty());
}

#[tokio::test]
async fn reconcile_removes_orphan_volumes_and_thaws_boxes() {
    let h = harness();
    let project = p("default");
    let src = forkable(&h).await;
    let clone = h.svc.create(&project, fork("clone", "src")).await.unwrap();
    // A crash mid-fork: the source frozen, a clone record gone but its volumes left, and
    // a subvolume from an interrupted `data create`.
    h.runtime.freeze(&src.id).await.unwrap();
    h.store.delete_box(&clone.id).unwrap();
    h.runtime.remove(&clone.id).await.unwrap();
    h.storage.create(&Subvol::volume("v-stray")).unwrap();
    let report = h.svc.reconcile().await.unwrap();
    assert!(
        !h.runtime
            .snapshot(&src.id)
            .unwrap()
            .container
            .unwrap()
            .frozen
    );
    let mut orphans = report.orphan_volumes.clone();
    orphans.sort();
    assert_eq!(orphans.len(), 3, "{orphans:?}");
    assert!(orphans.iter().any(|o| o == "v-stray"));
    assert!(
        orphans
            .iter()
            .filter(|o| o.starts_with("default:box-clone-"))
            .count()
            == 2
    );
    let (records, subvols) = h.volume_state();
    assert_eq!(records, ["data", "ref"]);
    assert_eq!(subvols.len(), 2);
    assert_eq!(report.orphan_roots, std::slice::from_ref(&clone.id));
}

#[tokio::test]
async fn update_of_a_box_whose_container_died_persists_for_its_next_start() {
    let h = harness();
    let project = p("default");
    let web = h.svc.create(&project, create("web", vec![])).await.unwrap();
    h.runtime.crash(&web.id);
    let settings = [("MEMORY".to_owned(), "512M".to_owned())].into();
    let updated = h
        .svc
        .update(
            &project,
            &n("web"),
            zomg_sdk::UpdateBox {
                environment: settings,
                tags: Default::default(),
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.config.ram_mb, 512);
    h.svc.resume(&project, &n("web")).await.unwrap();
    let fake = h.runtime.snapshot(&web.id).unwrap();
    assert_eq!(fake.spec.resources.memory_mb, 512);
    assert_eq!(fake.container.unwrap().resources.memory_mb, 512);
}
