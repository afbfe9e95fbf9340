//! The review lane through `vcw serve`: flagged videos wait for a reviewer; approve sets
//! the verdict `allow`, reject `block` (then 451), escalate keeps it and puts the subject
//! under legal hold; each decision is audited and sent as a `video.reviewed` webhook, and
//! the item leaves the lane.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::{Server, is_final, put_video, send, state, token, wait_for, webhook_receiver};
use crate::util::asset;
use vcw::api::Role;

#[test]
fn reviewers_decide_flagged_videos() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let up = token(d, Role::Uploader);
    let reviewer = token(d, Role::Reviewer);
    let officer = token(d, Role::PrivacyOfficer);
    let s = Server::start(d, &[]);
    let (hook_url, hooks) = webhook_receiver();
    let callback = [("vcw-callback-url", hook_url.as_str())];
    // Big Buck Bunny: NudeNet fires on the cartoon, open_nsfw does not: `review`.
    let bunny = asset("samples/bigbuckbunny.mp4");
    let ids = [
        "4e71e000000000000000000000000001",
        "4e71e000000000000000000000000002",
        "4e71e000000000000000000000000003",
    ];
    let fine = "4e71e0000000000000000000000000f1";
    for id in ids {
        assert_eq!(put_video(&s, &up, id, &bunny, &callback), 202);
    }
    assert_eq!(
        put_video(&s, &up, fine, &asset("samples/bikes.mp4"), &[]),
        202
    );
    for id in ids.iter().chain([&fine]) {
        assert_eq!(state(&wait_for(&s, &up, id, 240, is_final)), "done");
    }

    // The job list (the dashboard's): filtered, paged newest first, an uploader's own.
    let list = |who: &str, query: &str| -> (u16, Value) {
        let (status, _, body) = send(
            "GET",
            &s.url(&format!("/v1/videos{query}")),
            Some(who),
            &[],
            b"",
        );
        (status, serde_json::from_slice(&body).unwrap_or_default())
    };
    let (_, flagged) = list(&reviewer, "?verdict=review");
    assert_eq!(flagged["items"].as_array().unwrap().len(), 3, "{flagged}");
    let mut all = Vec::new();
    let mut query = "?limit=3".to_string();
    loop {
        let (status, page) = list(&up, &query);
        assert_eq!(status, 200);
        all.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string()),
        );
        match page["next"].as_str() {
            Some(next) => query = format!("?limit=3&before={next}"),
            None => break,
        }
    }
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!(all[0], fine, "newest first");
    let stranger = token(d, Role::Uploader);
    assert_eq!(
        list(&stranger, "").1["items"],
        json!([]),
        "not another uploader's"
    );
    assert_eq!(list(&reviewer, "?state=lost").0, 400);
    assert_eq!(list(&reviewer, "?before=x").0, 400);

    let lane = s.url("/v1/review");
    assert_eq!(send("GET", &lane, Some(&up), &[], b"").0, 403);
    let queued = |s: &Server| -> Vec<String> {
        let (status, _, body) = send("GET", &s.url("/v1/review"), Some(&reviewer), &[], b"");
        assert_eq!(status, 200);
        let v: Value = serde_json::from_slice(&body).unwrap();
        (v["items"].as_array().unwrap().iter())
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        queued(&s),
        ids,
        "the flagged ones, oldest first; not the allowed one"
    );

    let json_body = [("content-type", "application/json")];
    let decide = |id: &str, decision: &str| {
        let url = s.url(&format!("/v1/videos/{id}/review"));
        let body = json!({ "decision": decision, "reason": "checked frame by frame" });
        let (status, _, answer) = send(
            "POST",
            &url,
            Some(&reviewer),
            &json_body,
            body.to_string().as_bytes(),
        );
        (
            status,
            serde_json::from_slice::<Value>(&answer).unwrap_or_default(),
        )
    };
    let (status, answer) = decide(ids[0], "approve");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (
            answer["verdict_before"].as_str(),
            answer["verdict"].as_str()
        ),
        (Some("review"), Some("allow"))
    );
    let (status, answer) = decide(ids[1], "reject");
    assert_eq!((status, answer["verdict"].as_str()), (200, Some("block")));
    let playlist = s.url(&format!("/v1/videos/{}/playlist.m3u8", ids[1]));
    assert_eq!(send("GET", &playlist, Some(&reviewer), &[], b"").0, 451);
    let (status, answer) = decide(ids[2], "escalate");
    assert_eq!((status, answer["verdict"].as_str()), (200, Some("review")));
    assert!(queued(&s).is_empty(), "every item decided");

    // Escalation put the subject under legal hold: erasure waits.
    let erase = s.url(&format!("/v1/videos/{fine}"));
    let (status, _, body) = send("DELETE", &erase, Some(&officer), &[], b"");
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("escalated by a reviewer"));
    // Not flagged, unknown, or not a decision.
    assert_eq!(decide(fine, "approve").0, 409);
    assert_eq!(decide("4e71e0000000000000000000000000ff", "approve").0, 404);
    assert!((400..500).contains(&decide(ids[0], "shrug").0));
    let v = wait_for(&s, &up, ids[0], 10, is_final);
    assert_eq!(v["verdict"], "allow", "{v}");

    // Each decision reached the platform, with its own event id.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events: Vec<Value> = (hooks.lock().unwrap().iter())
            .filter_map(|(_, body)| serde_json::from_slice(body).ok())
            .filter(|e: &Value| e["event"] == "video.reviewed")
            .collect();
        if events.len() >= 3 {
            let mut seen: Vec<(String, String)> = (events.iter())
                .map(|e| {
                    (
                        e["video_id"].as_str().unwrap().into(),
                        e["decision"].as_str().unwrap().into(),
                    )
                })
                .collect();
            seen.sort();
            seen.dedup();
            let want: Vec<(String, String)> = ids
                .iter()
                .zip(["approve", "reject", "escalate"])
                .map(|(i, d)| (i.to_string(), d.to_string()))
                .collect();
            assert_eq!(seen, want);
            break;
        }
        assert!(Instant::now() < deadline, "reviewed webhooks: {events:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
