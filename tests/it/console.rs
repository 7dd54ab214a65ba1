//! The console page in a real browser: Debian's chromium, headless, driven
//! over the DevTools protocol. Screenshots are saved as test artifacts in
//! `target/tmp/` (`console-1280.png`, `console-phone.png`).

use crate::support::*;
use headless_chrome::protocol::cdp::Emulation::SetDeviceMetricsOverride;
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "console-admin-token";

fn browser() -> Browser {
    let opts = LaunchOptions::default_builder()
        .path(Some("/usr/bin/chromium".into()))
        .sandbox(false)
        .headless(true)
        .window_size(Some((1280, 900)))
        .idle_browser_timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    Browser::new(opts).expect("chromium starts (scripts/deps.sh installs it)")
}

/// `expr` evaluated in the page, as text.
fn js(tab: &Tab, expr: &str) -> String {
    let v = tab.evaluate(expr, false).unwrap().value;
    match v {
        Some(serde_json::Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn text_of(tab: &Tab, selector: &str) -> String {
    js(
        tab,
        &format!("(document.querySelector({selector:?}) || {{}}).textContent || ''"),
    )
}

fn save(tab: &Tab, name: &str) {
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, png).unwrap();
}

#[test]
fn the_console_shows_live_state_and_guards_writes() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let gw = gateway(&format!(
        r#"
server: {{ listen: ["{{listen}}"] }}
admin: {{ listen: "{{admin}}", token: "{TOKEN}" }}
upstreams:
  orders:
    targets: ["{}", "{}"]
    health_check: {{ path: /health, interval: 500ms, unhealthy_after: 1, healthy_after: 1 }}
  users: {{ targets: ["{}"], balance: least_request }}
routes:
  - {{ name: orders-api, match: {{ path_prefix: /api/orders, methods: [GET] }}, upstream: orders }}
  - {{ name: users-api, match: {{ host: api.example.com, path_prefix: /users }}, upstream: users }}
"#,
        a.addr, b.addr, b.addr
    ));
    // Light load for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, url) = (stop.clone(), gw.url("/api/orders/1"));
        std::thread::spawn(move || {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let _ = c.get(&url).send();
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let browser = browser();
    let tab = browser.new_tab().unwrap();
    tab.navigate_to(&gw.admin_url("/"))
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    tab.wait_for_element("tr[data-route='orders-api']").unwrap();
    // The config's routes and upstreams are listed.
    let routes = text_of(&tab, "#routes");
    assert!(
        routes.contains("orders-api") && routes.contains("users-api"),
        "{routes}"
    );
    assert!(routes.contains("api.example.com"), "{routes}");
    let pools = text_of(&tab, "#upstreams");
    assert!(
        pools.contains("orders") && pools.contains("least_request"),
        "{pools}"
    );
    let healthy = format!("[data-target='{}'][data-health='healthy']", a.addr);
    tab.wait_for_element(&healthy).unwrap();
    // The request counter moves without a reload of the page.
    let count = || {
        text_of(&tab, "#total-requests")
            .replace(',', "")
            .parse::<u64>()
            .unwrap_or(0)
    };
    let first = count();
    assert!(
        eventually(Duration::from_secs(5), || count() > first),
        "counter stuck at {first}"
    );
    assert!(text_of(&tab, "tr[data-route='orders-api'] td[data-field='rate']").ends_with("/s"));
    // A target taken down turns unhealthy within its check interval (plus
    // the page's one-second poll).
    a.set_health(503);
    let unhealthy = format!("[data-target='{}'][data-health='unhealthy']", a.addr);
    assert!(
        eventually(Duration::from_secs(4), || !js(
            &tab,
            &format!("String(!!document.querySelector({unhealthy:?}))")
        )
        .contains("false")),
        "{}",
        text_of(&tab, "#upstreams")
    );
    assert!(
        text_of(&tab, &unhealthy).contains("unhealthy"),
        "text, not only colour"
    );
    save(&tab, "console-1280.png");
    // Reload: refused without the token, done with it.
    let generation = gw.state.snapshots.load().generation;
    tab.find_element("#reload").unwrap().click().unwrap();
    assert!(eventually(Duration::from_secs(5), || text_of(
        &tab, "#message"
    )
    .contains("401")));
    assert_eq!(gw.state.snapshots.load().generation, generation);
    tab.find_element("#token")
        .unwrap()
        .click()
        .unwrap()
        .type_into(TOKEN)
        .unwrap();
    tab.find_element("#reload").unwrap().click().unwrap();
    // A gateway started from text has no file to re-read: the answer says so.
    assert!(eventually(Duration::from_secs(5), || {
        let m = text_of(&tab, "#message");
        m.contains("Reload done") || m.contains("Reload failed (400)")
    }));
    assert!(!text_of(&tab, "#message").contains("401"));
    // Purge with the token.
    tab.find_element("#purge-path")
        .unwrap()
        .click()
        .unwrap()
        .type_into("/api/orders/1")
        .unwrap();
    tab.find_element("#purge").unwrap().click().unwrap();
    assert!(eventually(Duration::from_secs(5), || text_of(
        &tab, "#message"
    )
    .contains("Purge done")));
    // Nothing on the page came from anywhere but the admin listener.
    let origins = js(
        &tab,
        "JSON.stringify(performance.getEntriesByType('resource').map(e => new URL(e.name).host).filter(h => h !== location.host))",
    );
    assert_eq!(origins, "[]");
    // Phone width: nothing wider than the screen.
    tab.call_method(SetDeviceMetricsOverride {
        width: 390,
        height: 844,
        device_scale_factor: 2.0,
        mobile: true,
        scale: None,
        screen_width: None,
        screen_height: None,
        position_x: None,
        position_y: None,
        dont_set_visible_size: None,
        screen_orientation: None,
        viewport: None,
        display_feature: None,
        device_posture: None,
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // (A mobile layout viewport grows to fit wide content: compare with
    // the device width itself.)
    let fits = js(&tab, "String(document.documentElement.scrollWidth <= 390)");
    assert_eq!(fits, "true", "page wider than a phone");
    save(&tab, "console-phone.png");
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
}

#[test]
fn the_console_shows_the_cluster_view() {
    use crate::cluster::{doc, Fleet};
    let up = Upstream::start("svc");
    let fleet = Fleet::start("console", 2, None);
    let rev = fleet.push(&doc(&up, "a"));
    fleet.converge("/a/x", 200, Duration::from_secs(2));
    let browser = browser();
    let tab = browser.new_tab().unwrap();
    tab.navigate_to(&fleet.nodes[0].admin_url("/"))
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    tab.wait_for_element("tr[data-node='node-1']").unwrap();
    assert!(
        eventually(Duration::from_secs(5), || text_of(&tab, "#cluster-summary")
            .contains(&format!("in sync · revision {rev}"))),
        "{}",
        text_of(&tab, "#cluster-summary")
    );
    let nodes = text_of(&tab, "#cluster");
    assert!(
        nodes.contains("node-0 (this node)") && nodes.contains("node-1"),
        "{nodes}"
    );
    assert!(nodes.contains("applied"), "{nodes}");
    save(&tab, "console-cluster.png");
}
