//! `create --fork` through the API: the clone sees the source's root and volumes at the
//! moment of the fork, the two diverge afterwards, the clone's volumes are hidden and die
//! with it, and the source can go first.

use std::collections::BTreeMap;

use zomg_sdk::{BoxInfo, CreateBox, CreateVolume, DataMountSpec};
use zomg_server::storage::Subvol;
use zomg_server::testing::TestServer;

use crate::checks::{
    assert_api_error, cgroup_file, create, project, service, sh, sh_ok, subvolumes,
};

/// A running box `src` with volumes at `/data` (rw) and `/cfg` (ro), settings, and files
/// written (not synced) in its root and its data volume.
async fn source(server: &TestServer) -> BoxInfo {
    let client = server.client();
    let project = project();
    for name in ["data", "cfg"] {
        let req = CreateVolume {
            name: name.into(),
            ..Default::default()
        };
        client.create_volume(&project, &req).await.unwrap();
    }
    let storage = service(server).storage_backend();
    let cfg = client
        .get_volume(&project, &"cfg".parse().unwrap())
        .await
        .unwrap();
    std::fs::write(
        storage.path(&Subvol::volume(&cfg.id)).join("app.conf"),
        "mode=prod\n",
    )
    .unwrap();
    let src = create(
        &client,
        &project,
        CreateBox {
            name: "src".into(),
            environment: BTreeMap::from([
                ("GREETING".to_owned(), "hi".to_owned()),
                ("KEEP".to_owned(), "1".to_owned()),
            ]),
            tags: BTreeMap::from([("team".to_owned(), "core".to_owned())]),
            cpus: Some(0.5),
            ram_mb: Some(256),
            storage_gb: Some(2),
            port: Some(8080),
            termination_grace_period_seconds: Some(2),
            data_mounts: vec![
                DataMountSpec {
                    name: "data".parse().unwrap(),
                    path: "/data".into(),
                    read_only: false,
                },
                DataMountSpec {
                    name: "cfg".parse().unwrap(),
                    path: "/cfg".into(),
                    read_only: true,
                },
            ],
            ..Default::default()
        },
    )
    .await;
    // No sync: the fork must see what was written, not only what reached the disk.
    sh_ok(
        &client,
        &project,
        "src",
        "echo root-file > /root/r.txt && echo data-file > /data/d.txt && \
         dd if=/dev/urandom of=/data/blob bs=1M count=8 2>/dev/null",
    )
    .await;
    src
}

#[tokio::test]
async fn a_fork_sees_root_and_volumes_and_then_diverges() {
    let server = TestServer::start().await;
    let client = server.client();
    let project = project();
    let src = source(&server).await;
    let blob_sum = sh_ok(
        &client,
        &project,
        "src",
        "md5sum /data/blob | cut -d' ' -f1",
    )
    .await;
    let clone = create(
        &client,
        &project,
        CreateBox {
            name: "clone".into(),
            fork: Some("src".into()),
            environment: BTreeMap::from([("GREETING".to_owned(), "hello".to_owned())]),
            tags: BTreeMap::from([("env".to_owned(), "dev".to_owned())]),
            ..Default::default()
        },
    )
    .await;

    // The running source was frozen for its snapshots and runs again.
    assert_eq!(
        cgroup_file(&server, &src.id, "freezer", "freezer.state"),
        "THAWED"
    );

    // Inherited settings, merged environment and tags.
    assert_eq!(clone.forked_from.as_deref(), Some("default:src"));
    assert_eq!(clone.base, src.base);
    assert_eq!(clone.config, src.config);
    assert_eq!(clone.port, Some(8080));
    assert_eq!(clone.termination_grace_period_seconds, 2);
    assert_eq!(clone.environment["GREETING"], "hello");
    assert_eq!(clone.environment["KEEP"], "1");
    assert_eq!(clone.tags["team"], "core");
    assert_eq!(clone.tags["env"], "dev");
    assert_eq!(
        sh_ok(&client, &project, "clone", "echo $GREETING $KEEP $BOX_NAME").await,
        "hello 1 clone"
    );

    // The clone sees the root and both volumes as they were, with the same modes.
    assert_eq!(
        sh_ok(&client, &project, "clone", "cat /root/r.txt").await,
        "root-file"
    );
    assert_eq!(
        sh_ok(&client, &project, "clone", "cat /data/d.txt").await,
        "data-file"
    );
    assert_eq!(
        sh_ok(
            &client,
            &project,
            "clone",
            "md5sum /data/blob | cut -d' ' -f1"
        )
        .await,
        blob_sum
    );
    assert_eq!(
        sh_ok(&client, &project, "clone", "cat /cfg/app.conf").await,
        "mode=prod"
    );
    let ro = sh(&client, &project, "clone", "touch /cfg/x").await;
    assert!(ro.stderr.contains("Read-only file system"), "{ro:?}");
    let mounts: Vec<(&str, bool)> = clone
        .data_mounts
        .iter()
        .map(|m| (m.path.as_str(), m.read_only))
        .collect();
    assert_eq!(mounts, [("/data", false), ("/cfg", true)]);
    for m in &clone.data_mounts {
        let name = m.name.as_str();
        let hex = name
            .strip_prefix("box-clone-")
            .unwrap_or_else(|| panic!("{name}"));
        assert!(
            hex.len() == 12 && hex.chars().all(|c| c.is_ascii_hexdigit()),
            "{name}"
        );
    }

    // Writes stay on their side.
    sh_ok(
        &client,
        &project,
        "clone",
        "echo clone > /data/d.txt && echo clone > /root/r.txt && echo new > /data/only-clone",
    )
    .await;
    sh_ok(&client, &project, "src", "echo src-later > /data/only-src").await;
    assert_eq!(
        sh_ok(&client, &project, "src", "cat /data/d.txt /root/r.txt").await,
        "data-file\nroot-file"
    );
    assert_eq!(
        sh_ok(&client, &project, "src", "ls /data").await,
        "blob\nd.txt\nonly-src"
    );
    assert_eq!(
        sh_ok(&client, &project, "clone", "ls /data").await,
        "blob\nd.txt\nonly-clone"
    );

    // The generated volumes are hidden and cannot be attached elsewhere.
    let listed: Vec<String> = client
        .list_volumes(&project)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name.to_string())
        .collect();
    assert_eq!(listed, ["cfg", "data"]);
    let owned = clone.data_mounts[0].name.clone();
    assert_api_error(
        client.get_volume(&project, &owned).await,
        409,
        "volume_owned",
        &format!(
            "volume \"{owned}\" belongs to box \"clone\" (a fork's copy of a volume) and cannot be shown on its own (see its box's data_mounts)"
        ),
    );
    let thief = CreateBox {
        name: "thief".into(),
        data_mounts: vec![DataMountSpec {
            name: owned.clone(),
            path: "/stolen".into(),
            read_only: true,
        }],
        ..Default::default()
    };
    assert_api_error(
        client.create_box(&project, &thief).await,
        409,
        "volume_owned",
        &format!(
            "volume \"{owned}\" belongs to box \"clone\" (a fork's copy of a volume) and cannot be attached to another box"
        ),
    );
    assert_api_error(
        client.delete_volume(&project, &owned).await,
        409,
        "volume_owned",
        &format!(
            "volume \"{owned}\" belongs to box \"clone\" (a fork's copy of a volume) and cannot be deleted on its own: it is deleted with its box"
        ),
    );

    // Deleting the clone deletes its volumes and nothing else.
    let (roots_before, volumes_before) = subvolumes(&server);
    assert_eq!((roots_before.len(), volumes_before.len()), (2, 4));
    let deleted = client
        .delete_box(&project, &clone.name, true)
        .await
        .unwrap();
    assert_eq!(deleted.status, zomg_sdk::DeleteState::Deleted);
    let (roots, volumes) = subvolumes(&server);
    assert_eq!(roots, std::slice::from_ref(&src.id));
    assert_eq!(
        volumes.len(),
        2,
        "the clone's volumes are gone: {volumes:?}"
    );
    let records = service(&server).store_backend().list_volumes(None).unwrap();
    assert!(
        records.iter().all(|v| v.owner_box_id.is_none()),
        "{records:?}"
    );
    assert_eq!(
        sh_ok(&client, &project, "src", "cat /data/d.txt").await,
        "data-file"
    );
}

#[tokio::test]
async fn deleting_the_source_first_leaves_the_fork_intact() {
    let server = TestServer::start().await;
    let client = server.client();
    let project = project();
    source(&server).await;
    create(
        &client,
        &project,
        CreateBox {
            name: "clone".into(),
            fork: Some("src".into()),
            ..Default::default()
        },
    )
    .await;
    client
        .delete_box(&project, &"src".parse().unwrap(), true)
        .await
        .unwrap();
    assert!(
        client
            .list_volumes(&project)
            .await
            .unwrap()
            .iter()
            .all(|v| v.attached_to.is_empty())
    );
    assert_eq!(
        sh_ok(
            &client,
            &project,
            "clone",
            "cat /root/r.txt /data/d.txt /cfg/app.conf"
        )
        .await,
        "root-file\ndata-file\nmode=prod"
    );
    // The fork survives a restart of its own without its source.
    let name = "clone".parse().unwrap();
    client.stop_box(&project, &name).await.unwrap();
    client.resume_box(&project, &name).await.unwrap();
    assert_eq!(
        sh_ok(&client, &project, "clone", "cat /data/d.txt").await,
        "data-file"
    );
    // The source's volumes are free again.
    client
        .delete_volume(&project, &"data".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        sh_ok(&client, &project, "clone", "cat /data/d.txt").await,
        "data-file"
    );
}

#[tokio::test]
async fn a_stopped_box_forks_and_bad_forks_leave_nothing() {
    let server = TestServer::start().await;
    let client = server.client();
    let project = project();
    source(&server).await;
    let src_name = "src".parse().unwrap();
    client.stop_box(&project, &src_name).await.unwrap();
    let clone = create(
        &client,
        &project,
        CreateBox {
            name: "clone".into(),
            fork: Some("src".into()),
            ram_mb: Some(128),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(clone.config.ram_mb, 128);
    assert_eq!(
        sh_ok(&client, &project, "clone", "cat /data/d.txt").await,
        "data-file"
    );
    let src = client.get_box(&project, &src_name).await.unwrap();
    assert_eq!(src.status, zomg_sdk::BoxStatus::Stopped);

    let before = subvolumes(&server);
    let fork = |name: &str, source: &str| CreateBox {
        name: name.into(),
        fork: Some(source.into()),
        ..Default::default()
    };
    assert_api_error(
        client.create_box(&project, &fork("src", "src")).await,
        400,
        "fork_self",
        "box \"src\" cannot be cloned from itself",
    );
    assert_api_error(
        client.create_box(&project, &fork("other", "ghost")).await,
        404,
        "box_not_found",
        "cannot fork box \"ghost\": it does not exist in project \"default\"",
    );
    assert_api_error(
        client
            .create_box(
                &project,
                &CreateBox {
                    base: Some("bb".into()),
                    ..fork("other", "src")
                },
            )
            .await,
        400,
        "invalid_request",
        "--base cannot be used with --fork",
    );
    assert_api_error(
        client.create_box(&project, &fork("clone", "src")).await,
        409,
        "box_exists",
        "box \"clone\" already exists in project \"default\"",
    );
    assert_eq!(subvolumes(&server), before, "failed forks left subvolumes");
    let names: Vec<String> = client
        .list_all_boxes(&project, &Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name.to_string())
        .collect();
    assert_eq!(names, ["clone", "src"]);
}
