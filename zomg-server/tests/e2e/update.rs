//! `update` and storage accounting through the API: CPU and MEMORY change a running box's
//! cgroup without a restart, settings outside the allowlist are refused when alone, and
//! `storage_gb` is enforced inside the box.

use std::collections::BTreeMap;

use zomg_sdk::{CreateBox, UpdateBox};
use zomg_server::testing::TestServer;

use crate::checks::{assert_api_error, cgroup_file, create, project, sh, sh_ok};

fn settings(pairs: &[(&str, &str)]) -> UpdateBox {
    UpdateBox {
        environment: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        tags: BTreeMap::new(),
    }
}

/// The box's init as the host sees it (pid from runc's state) and as the box sees it (the
/// start time of its pid 1): both change when the box restarts.
async fn init_start(
    ts: &TestServer,
    client: &zomg_sdk::Client,
    project: &zomg_sdk::ProjectName,
    box_id: &str,
) -> (u64, String) {
    let state = ts
        .data_dir()
        .join("runtime/runc")
        .join(box_id)
        .join("state.json");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).expect("runc state")).expect("json");
    let pid = state["init_process_pid"].as_u64().expect("init pid");
    let started = sh_ok(client, project, "web", "cut -d' ' -f22 /proc/1/stat").await;
    (pid, started)
}

#[tokio::test]
async fn cpu_and_memory_apply_live_and_persist() {
    let server = TestServer::start().await;
    let client = server.client();
    let project = project();
    let web = create(
        &client,
        &project,
        CreateBox {
            name: "web".into(),
            ram_mb: Some(256),
            cpus: Some(1.0),
            ..Default::default()
        },
    )
    .await;
    let name = web.name.clone();
    assert_eq!(
        cgroup_file(&server, &web.id, "memory", "memory.limit_in_bytes"),
        (256u64 << 20).to_string()
    );
    let started = init_start(&server, &client, &project, &web.id).await;

    let updated = client
        .update_box(
            &project,
            &name,
            &settings(&[("MEMORY", "512M"), ("CPU", "500m"), ("FOO", "dropped")]),
        )
        .await
        .unwrap();
    assert_eq!(updated.config.ram_mb, 512);
    assert_eq!(updated.config.cpus, 0.5);
    assert!(!updated.environment.contains_key("FOO"));
    assert_eq!(
        cgroup_file(&server, &web.id, "memory", "memory.limit_in_bytes"),
        (512u64 << 20).to_string()
    );
    assert_eq!(
        cgroup_file(&server, &web.id, "cpu", "cpu.cfs_quota_us"),
        "50000"
    );
    assert_eq!(
        sh_ok(
            &client,
            &project,
            "web",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
        )
        .await,
        (512u64 << 20).to_string(),
        "the box sees its new limit"
    );
    assert_eq!(
        init_start(&server, &client, &project, &web.id).await,
        started,
        "the box restarted"
    );

    // Lowering works too, and tags, port and grace change alongside.
    let mut update = settings(&[
        ("MEMORY", "128M"),
        ("PORT", "3000"),
        ("TERMINATION_GRACE_PERIOD_SECONDS", "1"),
    ]);
    update.tags.insert("tier".into(), "web".into());
    let updated = client.update_box(&project, &name, &update).await.unwrap();
    assert_eq!(
        (
            updated.config.ram_mb,
            updated.port,
            updated.termination_grace_period_seconds
        ),
        (128, Some(3000), 1)
    );
    assert_eq!(updated.tags["tier"], "web");
    assert_eq!(
        cgroup_file(&server, &web.id, "memory", "memory.limit_in_bytes"),
        (128u64 << 20).to_string()
    );
    assert_eq!(
        init_start(&server, &client, &project, &web.id).await,
        started,
        "the box restarted"
    );

    // Persisted: a stopped box keeps them for its next start.
    client.stop_box(&project, &name).await.unwrap();
    client
        .update_box(&project, &name, &settings(&[("CPU", "250m")]))
        .await
        .unwrap();
    client.resume_box(&project, &name).await.unwrap();
    assert_eq!(
        cgroup_file(&server, &web.id, "memory", "memory.limit_in_bytes"),
        (128u64 << 20).to_string()
    );
    assert_eq!(
        cgroup_file(&server, &web.id, "cpu", "cpu.cfs_quota_us"),
        "25000"
    );
    let shown = client.get_box(&project, &name).await.unwrap();
    assert_eq!((shown.config.cpus, shown.config.ram_mb), (0.25, 128));
}

#[tokio::test]
async fn settings_outside_the_allowlist_alone_are_refused() {
    let server = TestServer::start().await;
    let client = server.client();
    let project = project();
    let web = create(
        &client,
        &project,
        CreateBox {
            name: "web".into(),
            ..Default::default()
        },
    )
    .await;
    assert_api_error(
        client
            .update_box(&project, &web.name, &settings(&[("FOO", "1")]))
            .await,
        400,
        "no_updates",
        "no updates provided",
    );
    assert_api_error(
        client.update_box(&project, &web.name, &settings(&[])).await,
        400,
        "no_updates",
        "no updates provided",
    );
    assert_api_error(
        client
            .update_box(&project, &web.name, &settings(&[("MEMORY", "lots")]))
            .await,
        400,
        "invalid_request",
        "invalid memory value \"lots\": use a size like 512M or 2G",
    );
    let unchanged = client.get_box(&project, &web.name).await.unwrap();
    assert_eq!(unchanged.config, web.config);
}

#[tokio::test]
async fn storage_gb_is_enforced_inside_the_box_which_keeps_running() {
    let server = TestServer::start().await;
    let client = server.client();
    let project = project();
    let web = create(
        &client,
        &project,
        CreateBox {
            name: "web".into(),
            storage_gb: Some(1),
            ..Default::default()
        },
    )
    .await;
    let fresh = client.get_box(&project, &web.name).await.unwrap();
    let base_bytes = fresh.storage_used_bytes.expect("storage_used_bytes");
    assert!(
        base_bytes > 1 << 20,
        "the busybox base counts: {base_bytes}"
    );
    let over = sh(
        &client,
        &project,
        "web",
        "dd if=/dev/zero of=/root/fill bs=1M count=1200",
    )
    .await;
    assert_ne!(over.exit_code, Some(0), "{over:?}");
    assert!(over.stderr.contains("Disk quota exceeded"), "{over:?}");
    // Still running, still usable once space is freed.
    let shown = client.get_box(&project, &web.name).await.unwrap();
    assert_eq!(shown.status, zomg_sdk::BoxStatus::Running);
    let used = shown.storage_used_bytes.expect("storage_used_bytes");
    assert!(
        used > 900 << 20 && used <= (1 << 30) + (16 << 20),
        "used {used} bytes against a 1 GiB limit"
    );
    sh_ok(
        &client,
        &project,
        "web",
        "rm /root/fill && echo ok > /root/after",
    )
    .await;
    let after = client.get_box(&project, &web.name).await.unwrap();
    assert!(after.storage_used_bytes.unwrap() < 64 << 20, "{after:?}");
}
