//! Data volumes through the API: lifecycle, mount modes inside a box, in-use refusal, and
//! bad `--data` requests.

use zomg_sdk::{CreateBox, CreateVolume, DataMountSpec, VolumeName};
use zomg_server::storage::Subvol;
use zomg_server::testing::TestServer;

use crate::checks::{assert_api_error, create, project, service, sh, sh_ok, subvolumes};

fn mount(name: &str, path: &str, read_only: bool) -> DataMountSpec {
    DataMountSpec {
        name: name.parse().unwrap(),
        path: path.into(),
        read_only,
    }
}

fn vol(name: &str) -> CreateVolume {
    CreateVolume {
        name: name.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn volumes_mount_read_write_and_read_only_and_outlive_boxes() {
    let server = TestServer::start().await;
    let client = server.client();
    let project = project();
    let data = client
        .create_volume(
            &project,
            &CreateVolume {
                size_gb: Some(1),
                ..vol("data")
            },
        )
        .await
        .unwrap();
    assert_eq!(data.size_gb, Some(1));
    client
        .create_volume(&project, &vol("assets"))
        .await
        .unwrap();
    assert_api_error(
        client.create_volume(&project, &vol("data")).await,
        409,
        "volume_exists",
        "volume \"data\" already exists in project \"default\"",
    );

    let web = create(
        &client,
        &project,
        CreateBox {
            name: "web".into(),
            data_mounts: vec![
                mount("data", "/data", false),
                mount("assets", "/srv/assets/", true),
            ],
            ..Default::default()
        },
    )
    .await;
    let mounts: Vec<(String, String, bool)> = web
        .data_mounts
        .iter()
        .map(|m| (m.name.to_string(), m.path.clone(), m.read_only))
        .collect();
    assert_eq!(
        mounts,
        [
            ("data".to_owned(), "/data".to_owned(), false),
            ("assets".to_owned(), "/srv/assets".to_owned(), true)
        ]
    );
    let shown = client.get_box(&project, &web.name).await.unwrap();
    assert_eq!(shown.data_mounts, web.data_mounts);

    sh_ok(&client, &project, "web", "echo hello > /data/greeting").await;
    let ro = sh(&client, &project, "web", "echo x > /srv/assets/f").await;
    assert_ne!(ro.exit_code, Some(0), "a read-only mount took a write");
    assert!(ro.stderr.contains("Read-only file system"), "{ro:?}");
    // The mounts are the volumes' subvolumes, seen from the host too.
    let storage = service(&server).storage_backend();
    let data_path = storage.path(&Subvol::volume(&data.id));
    assert_eq!(
        std::fs::read_to_string(data_path.join("greeting")).unwrap(),
        "hello\n"
    );
    std::fs::write(
        storage
            .path(&Subvol::volume(
                &client
                    .get_volume(&project, &"assets".parse().unwrap())
                    .await
                    .unwrap()
                    .id,
            ))
            .join("logo"),
        "svg",
    )
    .unwrap();
    assert_eq!(
        sh_ok(&client, &project, "web", "cat /srv/assets/logo").await,
        "svg"
    );

    let listed = client.list_volumes(&project).await.unwrap();
    let rows: Vec<(String, Vec<String>)> = listed
        .iter()
        .map(|v| (v.name.to_string(), v.attached_to.clone()))
        .collect();
    assert_eq!(
        rows,
        [
            ("assets".to_owned(), vec!["web".to_owned()]),
            ("data".to_owned(), vec!["web".to_owned()])
        ]
    );
    let data_now = client
        .get_volume(&project, &"data".parse().unwrap())
        .await
        .unwrap();
    assert!(data_now.used_bytes.unwrap() >= 6, "{data_now:?}");

    // Attached volumes cannot be deleted; the message names the box.
    assert_api_error(
        client
            .delete_volume(&project, &"data".parse().unwrap())
            .await,
        409,
        "volume_in_use",
        "volume \"data\" is attached to box \"web\": delete the box first",
    );
    // The data outlives the box and can be attached again.
    client.delete_box(&project, &web.name, true).await.unwrap();
    create(
        &client,
        &project,
        CreateBox {
            name: "web2".into(),
            data_mounts: vec![mount("data", "/mnt/d", true)],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        sh_ok(&client, &project, "web2", "cat /mnt/d/greeting").await,
        "hello"
    );
    client
        .delete_box(&project, &"web2".parse().unwrap(), true)
        .await
        .unwrap();

    // --from copies a volume; the copy is independent.
    let copy = client
        .create_volume(
            &project,
            &CreateVolume {
                from: Some("data".into()),
                ..vol("data.bak")
            },
        )
        .await
        .unwrap();
    assert_eq!(copy.size_gb, Some(1));
    let copy_path = storage.path(&Subvol::volume(&copy.id));
    assert_eq!(
        std::fs::read_to_string(copy_path.join("greeting")).unwrap(),
        "hello\n"
    );

    for name in ["data", "assets", "data.bak"] {
        let name: VolumeName = name.parse().unwrap();
        client.delete_volume(&project, &name).await.unwrap();
    }
    assert!(client.list_volumes(&project).await.unwrap().is_empty());
    assert_eq!(subvolumes(&server), (vec![], vec![]), "no subvolume left");
    assert_api_error(
        client
            .delete_volume(&project, &"data".parse().unwrap())
            .await,
        404,
        "volume_not_found",
        "volume \"data\" not found in project \"default\" (see `zomg data list`)",
    );
}

#[tokio::test]
async fn bad_data_mounts_are_refused_and_leave_nothing() {
    let server = TestServer::start().await;
    let client = server.client();
    let project = project();
    client.create_volume(&project, &vol("data")).await.unwrap();
    client.create_volume(&project, &vol("logs")).await.unwrap();
    let reserved = "(reserved: /proc, /sys, /dev, /run, /etc, /volumes, /home, /box)";
    let cases: Vec<(Vec<DataMountSpec>, u16, &str, String)> = vec![
        (
            vec![mount("data", "relative/path", false)],
            400,
            "invalid_mount_path",
            "invalid mount path \"relative/path\": must be absolute, e.g. /data".into(),
        ),
        (
            vec![mount("data", "//", false)],
            400,
            "invalid_mount_path",
            "invalid mount path \"//\": cannot be /".into(),
        ),
        (
            vec![mount("data", "/data/../etc", false)],
            400,
            "invalid_mount_path",
            "invalid mount path \"/data/../etc\": must not contain \"..\"".into(),
        ),
        (
            vec![mount("data", "/proc/x", false)],
            400,
            "invalid_mount_path",
            format!("invalid mount path \"/proc/x\": cannot be /proc or sit under it {reserved}"),
        ),
        (
            vec![mount("data", "/home/", false)],
            400,
            "invalid_mount_path",
            format!("invalid mount path \"/home/\": cannot be /home or sit under it {reserved}"),
        ),
        (
            vec![mount("data", "/./box//x", false)],
            400,
            "invalid_mount_path",
            format!("invalid mount path \"/./box//x\": cannot be /box or sit under it {reserved}"),
        ),
        (
            vec![mount("nope", "/data", false)],
            404,
            "volume_not_found",
            "volume \"nope\" not found in project \"default\" (see `zomg data list`)".into(),
        ),
        (
            vec![mount("data", "/a", false), mount("data", "/b", false)],
            400,
            "duplicate_mount",
            "volume \"data\" is mounted twice: each volume can be mounted once per box".into(),
        ),
        (
            vec![
                mount("data", "/srv/x", false),
                mount("logs", "/srv//x/", true),
            ],
            400,
            "duplicate_mount",
            "two mounts use the path \"/srv/x\": each mount path must be unique".into(),
        ),
    ];
    for (mounts, status, code, message) in cases {
        let req = CreateBox {
            name: "web".into(),
            data_mounts: mounts,
            ..Default::default()
        };
        assert_api_error(
            client.create_box(&project, &req).await,
            status,
            code,
            &message,
        );
    }
    // A volume of another project is not found in this one.
    let other = "other".parse().unwrap();
    client.create_volume(&other, &vol("theirs")).await.unwrap();
    let req = CreateBox {
        name: "web".into(),
        data_mounts: vec![mount("theirs", "/t", false)],
        ..Default::default()
    };
    assert_api_error(
        client.create_box(&project, &req).await,
        404,
        "volume_not_found",
        "volume \"theirs\" not found in project \"default\" (see `zomg data list`)",
    );
    assert!(
        client
            .list_all_boxes(&project, &Default::default())
            .await
            .unwrap()
            .is_empty()
    );
    let (roots, volumes) = subvolumes(&server);
    assert!(roots.is_empty(), "roots left: {roots:?}");
    assert_eq!(volumes.len(), 3, "only the three volumes: {volumes:?}");
}
