//! Volume calls of `Client` against a scripted HTTP server: paths, bodies, answers, errors.

use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use zomg_sdk::{Client, CreateVolume, ProjectName, Target, VolumeName, VolumeRef};

const TOKEN: &str = "tok-v";

fn volume_json(name: &str, attached: &[&str]) -> Value {
    json!({
        "id": format!("v-{name}"),
        "name": name,
        "project": "proj",
        "size_gb": 10,
        "used_bytes": 4096,
        "attached_to": attached,
        "created_at": "2026-11-28T10:00:00Z"
    })
}

async fn setup() -> (MockServer, Client) {
    let server = MockServer::start().await;
    let target = Target::new(server.uri().parse().unwrap()).with_token(TOKEN);
    (server, Client::new(&target).unwrap())
}

fn authed(m: &str, p: &str) -> wiremock::MockBuilder {
    Mock::given(method(m))
        .and(path(p))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
}

fn proj() -> ProjectName {
    "proj".parse().unwrap()
}

#[tokio::test]
async fn create_list_show_delete() {
    let (server, client) = setup().await;
    authed("POST", "/v1/projects/proj/volumes")
        .and(body_json(
            json!({"name": "cache.v2", "size_gb": 10, "from": "cache"}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(volume_json("cache.v2", &[])))
        .expect(1)
        .mount(&server)
        .await;
    authed("GET", "/v1/projects/proj/volumes")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"volumes": [
            volume_json("cache", &["web"]), volume_json("cache.v2", &[])
        ]})))
        .expect(1)
        .mount(&server)
        .await;
    authed("GET", "/v1/projects/proj/volumes/cache")
        .respond_with(ResponseTemplate::new(200).set_body_json(volume_json("cache", &["web"])))
        .expect(1)
        .mount(&server)
        .await;
    authed("DELETE", "/v1/projects/proj/volumes/cache.v2")
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;

    let req = CreateVolume {
        name: "cache.v2".into(),
        size_gb: Some(10),
        from: Some("cache".into()),
    };
    let v = client.create_volume(&proj(), &req).await.unwrap();
    assert_eq!(
        (v.name.as_str(), v.size_gb, v.used_bytes),
        ("cache.v2", Some(10), Some(4096))
    );
    let all = client.list_volumes(&proj()).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].attached_to, ["web"]);
    let cache: VolumeName = "cache".parse().unwrap();
    assert_eq!(
        client.get_volume(&proj(), &cache).await.unwrap().id,
        "v-cache"
    );
    client
        .delete_volume(&proj(), &"cache.v2".parse().unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn errors_are_typed() {
    let (server, client) = setup().await;
    authed("DELETE", "/v1/projects/proj/volumes/cache")
        .respond_with(ResponseTemplate::new(409).set_body_json(json!({
            "error": "volume_in_use",
            "message": "volume \"cache\" is attached to box \"web\": delete the box first"
        })))
        .mount(&server)
        .await;
    authed("GET", "/v1/projects/proj/volumes/gone")
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "error": "volume_not_found",
            "message": "volume \"gone\" not found in project \"proj\" (see `zomg data list`)"
        })))
        .mount(&server)
        .await;
    let e = client
        .delete_volume(&proj(), &"cache".parse().unwrap())
        .await
        .unwrap_err();
    assert!(e.is_conflict());
    assert_eq!(e.code(), Some("volume_in_use"));
    assert_eq!(
        e.to_string(),
        "volume \"cache\" is attached to box \"web\": delete the box first"
    );
    let e = client
        .get_volume(&proj(), &"gone".parse().unwrap())
        .await
        .unwrap_err();
    assert!(e.is_not_found());
}

#[test]
fn volume_refs_name_a_project_with_a_colon_only() {
    let r: VolumeRef = "proj:my.data".parse().unwrap();
    assert_eq!(r.project, Some(proj()));
    assert_eq!(r.name.as_str(), "my.data");
    let r: VolumeRef = "my.data".parse().unwrap();
    assert_eq!((r.project, r.name.as_str()), (None, "my.data"));
}
