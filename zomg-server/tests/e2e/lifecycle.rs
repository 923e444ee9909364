//! Box lifecycle on real backends: create, look inside, stop, resume, delete, nothing left.

use std::collections::BTreeMap;

use zomg_sdk::{BoxName, BoxStatus, Client, CreateBox, DeleteState, ProjectName};
use zomg_server::testing::{TestServer, box_base_rootfs};

fn p(s: &str) -> ProjectName {
    s.parse().unwrap()
}

fn n(s: &str) -> BoxName {
    s.parse().unwrap()
}

/// Runs a shell command in the box and returns (stdout, exit code).
async fn sh(client: &Client, project: &str, name: &str, script: &str) -> (String, i32) {
    let r = crate::exec_sh(client, project, name, script).await;
    assert!(
        r.stderr.is_empty() || r.exit_code != Some(0),
        "stderr of {script:?}: {}",
        r.stderr
    );
    (r.stdout, r.exit_code.expect("exit code"))
}

/// Host view of a box's memory cgroup.
fn memory_limit(ts: &TestServer, box_id: &str) -> u64 {
    crate::checks::cgroup_file(ts, box_id, "memory", "memory.limit_in_bytes")
        .parse()
        .unwrap()
}

async fn lifecycle(ts: &TestServer, base: &str, check_bash: bool) {
    let client = ts.client();
    let project = p("default");
    let created = client
        .create_box(
            &project,
            &CreateBox {
                name: "web".into(),
                base: Some(base.into()),
                environment: [("GREETING".to_owned(), "hello world".to_owned())].into(),
                ram_mb: Some(300),
                cpus: Some(0.5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(created.status, BoxStatus::Running);
    assert_eq!(created.base, format!("{base}:latest"));

    let (host, _) = sh(&client, "default", "web", "hostname").await;
    assert_eq!(host.trim(), "web.default");
    let (env, _) = sh(&client, "default", "web", "cat /etc/boxes-env").await;
    for line in [
        "export ZOMG_PROJECT='default'",
        "export BOX_NAME='web'",
        "export TERM='xterm-256color'",
        "export GREETING='hello world'",
    ] {
        assert!(
            env.contains(line),
            "{line} missing from /etc/boxes-env:\n{env}"
        );
    }
    let (proc_env, _) = sh(
        &client,
        "default",
        "web",
        "echo \"$BOX_NAME $ZOMG_PROJECT $GREETING\"",
    )
    .await;
    assert_eq!(
        proc_env.trim(),
        "web default hello world",
        "variables are in the process environment"
    );
    let (init, _) = sh(&client, "default", "web", "tr '\\0' ' ' < /proc/1/cmdline").await;
    assert!(init.starts_with("/run/zomg/tini "), "pid 1 is tini: {init}");
    let (me, _) = sh(&client, "default", "web", "id -u; echo $HOME").await;
    assert_eq!(me, "0\n/root\n");
    assert_eq!(
        memory_limit(ts, &created.id),
        300 << 20,
        "memory limit applied"
    );
    if check_bash {
        // Interactive bash sources /etc/bash.bashrc, which sources /etc/boxes-env.
        let (v, _) = sh(
            &client,
            "default",
            "web",
            "env -i bash -ic 'echo $BOX_NAME' 2>/dev/null",
        )
        .await;
        assert_eq!(v.trim(), "web");

        // The seccomp filter, seen from a real distribution's python: the host's keyrings,
        // io_uring and user namespaces are out of reach (EPERM = 1); clone3 reports ENOSYS
        // (38) so the C library falls back to clone, and threads and processes still start.
        // System call numbers are x86-64's.
        #[cfg(target_arch = "x86_64")]
        {
            let probe = r#"python3 - <<'PY'
import ctypes, os, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
def errno_of(nr, *args):
    ctypes.set_errno(0)
    return 0 if libc.syscall(nr, *args) >= 0 else ctypes.get_errno()
# keyctl(GET_KEYRING_ID, USER_KEYRING), io_uring_setup, unshare(NEWUSER), clone3
print(errno_of(250, 0, -4, 0), errno_of(425, 1, 0), errno_of(272, 0x10000000), errno_of(435, 0, 0))
t = threading.Thread(target=lambda: None); t.start(); t.join()
pid = os.fork()
if pid == 0:
    os._exit(7)
print(subprocess.run(["true"]).returncode, os.waitpid(pid, 0)[1] >> 8)
PY"#;
            let (v, code) = sh(&client, "default", "web", probe).await;
            assert_eq!((v.as_str(), code), ("1 1 1 38\n0 7\n", 0));
        }
    }

    let (_, code) = sh(
        &client,
        "default",
        "web",
        "echo kept > /root/state.txt; echo gone > /tmp/x",
    )
    .await;
    assert_eq!(code, 0);
    let stopped = client.stop_box(&project, &n("web")).await.unwrap();
    assert_eq!(stopped.status, BoxStatus::Stopped);
    let resumed = client.resume_box(&project, &n("web")).await.unwrap();
    assert_eq!(resumed.status, BoxStatus::Running);
    let (state, _) = sh(&client, "default", "web", "cat /root/state.txt; ls /tmp").await;
    assert_eq!(state, "kept\n", "root survives stop/resume; /tmp is fresh");

    let err = client
        .delete_box(&project, &n("web"), false)
        .await
        .unwrap_err();
    assert!(err.is_conflict());
    assert_eq!(err.code(), Some("box_running"));
    assert_eq!(err.to_string(), "box is running");
    let deleted = client.delete_box(&project, &n("web"), true).await.unwrap();
    assert_eq!(deleted.status, DeleteState::Deleted);
    assert_eq!(
        client
            .delete_status(&project, &n("web"))
            .await
            .unwrap()
            .status,
        DeleteState::Deleted
    );
    assert!(
        client
            .get_box(&project, &n("web"))
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(
        ts.leftovers(),
        Vec::<String>::new(),
        "nothing left on the host"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_on_busybox() {
    let ts = TestServer::start().await;
    lifecycle(&ts, "bb", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_on_box_base() {
    let ts = TestServer::start().await;
    let rootfs = tokio::task::spawn_blocking(box_base_rootfs).await.unwrap();
    ts.import_base("box-base", &rootfs).await;
    lifecycle(&ts, "box-base", true).await;
    // box-base feels like a machine: the spec's packages are there.
    let client = ts.client();
    client
        .create_box(
            &p("default"),
            &CreateBox {
                name: "tools".into(),
                base: Some("box-base".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (out, code) = sh(&client, "default", "tools", "for t in bash curl python3 tar ps ip ping; do command -v $t >/dev/null || echo missing $t; done; python3 -c 'print(6*7)'").await;
    assert_eq!((out.as_str(), code), ("42\n", 0));
    client
        .delete_box(&p("default"), &n("tools"), true)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_and_leaves_nothing() {
    let ts = TestServer::start().await;
    let client = ts.client();
    let project = p("default");
    client
        .create_box(
            &project,
            &CreateBox {
                name: "taken".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let cases: Vec<(CreateBox, u16, &str)> = vec![
        (
            CreateBox {
                name: "Bad_Name".into(),
                ..Default::default()
            },
            400,
            "invalid box name \"Bad_Name\"",
        ),
        (
            CreateBox {
                name: "x".into(),
                base: Some("nope".into()),
                ..Default::default()
            },
            404,
            "base \"nope:latest\" not found",
        ),
        (
            CreateBox {
                name: "taken".into(),
                ..Default::default()
            },
            409,
            "box \"taken\" already exists in project \"default\"",
        ),
        (
            CreateBox {
                name: "x".into(),
                environment: [("ZOMG_PROJECT".to_owned(), "x".to_owned())].into(),
                ..Default::default()
            },
            400,
            "environment variable is reserved",
        ),
        (
            CreateBox {
                name: "x".into(),
                cpus: Some(1000.0),
                ..Default::default()
            },
            400,
            "cpu 1000 is out of range",
        ),
        (
            CreateBox {
                name: "x".into(),
                ram_mb: Some(4),
                ..Default::default()
            },
            400,
            "memory 4M is out of range",
        ),
    ];
    for (req, status, message) in cases {
        let e = client.create_box(&project, &req).await.unwrap_err();
        assert_eq!(e.status(), Some(status), "{req:?}: {e}");
        assert!(e.to_string().contains(message), "{req:?}: {e}");
    }
    client
        .delete_box(&project, &n("taken"), true)
        .await
        .unwrap();
    assert_eq!(ts.leftovers(), Vec::<String>::new());
    // Unauthenticated requests are refused.
    let anon = Client::new(&zomg_sdk::Target::new(ts.url().parse().unwrap())).unwrap();
    let e = anon
        .list_boxes(&project, &Default::default())
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(401));
}

#[tokio::test(flavor = "multi_thread")]
async fn list_filters_pages_and_spans_projects() {
    let ts = TestServer::start().await;
    let client = ts.client();
    for (proj, name, tier) in [
        ("alpha", "a1", "web"),
        ("alpha", "a2", "db"),
        ("beta", "b1", "web"),
    ] {
        let tags: BTreeMap<_, _> = [("tier".to_owned(), tier.to_owned())].into();
        client
            .create_box(
                &p(proj),
                &CreateBox {
                    name: name.into(),
                    tags,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    let all = client
        .list_all_boxes(zomg_sdk::ProjectScope::All, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
        ["a1", "a2", "b1"]
    );
    let opts = zomg_sdk::ListOptions {
        max_results: Some(1),
        ..Default::default()
    };
    let page = client.list_boxes(&p("alpha"), &opts).await.unwrap();
    assert!(page.has_more);
    assert_eq!(page.boxes.len(), 1);
    let web = zomg_sdk::ListOptions {
        tags: [("tier".to_owned(), "web".to_owned())].into(),
        ..Default::default()
    };
    let webs = client
        .list_all_boxes(zomg_sdk::ProjectScope::All, &web)
        .await
        .unwrap();
    assert_eq!(
        webs.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
        ["a1", "b1"]
    );
    for (proj, name) in [("alpha", "a1"), ("alpha", "a2"), ("beta", "b1")] {
        client.delete_box(&p(proj), &n(name), true).await.unwrap();
    }
    assert_eq!(ts.leftovers(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_side_by_side_do_not_collide() {
    let (one, two) = tokio::join!(TestServer::start(), TestServer::start());
    let (c1, c2) = (one.client(), two.client());
    let req = CreateBox {
        name: "same".into(),
        ..Default::default()
    };
    let project = p("default");
    let (b1, b2) = tokio::join!(c1.create_box(&project, &req), c2.create_box(&project, &req));
    let (b1, b2) = (b1.unwrap(), b2.unwrap());
    assert_eq!(b1.status, BoxStatus::Running);
    assert_eq!(b2.status, BoxStatus::Running);
    c1.delete_box(&p("default"), &n("same"), true)
        .await
        .unwrap();
    let (out, _) = sh(&c2, "default", "same", "echo alive").await;
    assert_eq!(
        out, "alive\n",
        "deleting a box on one server leaves the other's alone"
    );
    c2.delete_box(&p("default"), &n("same"), true)
        .await
        .unwrap();
    assert_eq!(one.leftovers(), Vec::<String>::new());
    assert_eq!(two.leftovers(), Vec::<String>::new());
}
