//! The routes: one parsed request mapped to its response, without I/O (the tests call
//! [`respond`] directly). Announce and scrape failures are BEP 3 `failure reason`s.

use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};

use proto::InfoHash;
use proto::tracker::http::{
    AnnounceRequest, AnnounceResponse, ScrapeResponse, ScrapeStats, encode_failure,
    parse_scrape_query,
};
use rand::rngs::SmallRng;

use super::auth::authorized;
use super::framing::{HttpRequest, HttpResponse};
use crate::state::{Shared, canonical};
use crate::stats::bump;
use crate::swarm::Announce;

/// Maps one request to its response (no I/O; `peer` is the connection's address).
pub(crate) fn respond(
    shared: &Shared,
    rng: &mut SmallRng,
    req: &HttpRequest,
    peer: SocketAddr,
) -> HttpResponse {
    let path = req.path.trim_end_matches('/');
    match (req.method.as_str(), path) {
        ("GET", "/announce") => announce(shared, rng, &req.query, peer),
        ("GET", "/scrape") => scrape(shared, &req.query),
        ("GET", "/stats") => HttpResponse::ok(
            "application/json",
            serde_json::to_vec(&shared.stats()).unwrap_or_default(),
        ),
        ("GET", "/metrics") => HttpResponse::ok(
            proto::prometheus::CONTENT_TYPE,
            shared.stats().prometheus().into_bytes(),
        ),
        ("POST", "/register") | ("POST", "/unregister") => admin(shared, req, path),
        (_, "/announce" | "/scrape" | "/stats" | "/metrics" | "/register" | "/unregister") => {
            bump(&shared.counters(0).http_bad_request);
            HttpResponse::text(405, "method not allowed")
        }
        _ => {
            bump(&shared.counters(0).http_bad_request);
            HttpResponse::text(404, "not found")
        }
    }
}

fn failure(shared: &Shared, reason: &str) -> HttpResponse {
    bump(&shared.counters(0).http_failure);
    let mut body = Vec::new();
    encode_failure(reason, &mut body);
    // BEP 3: failures are a 200 with a `failure reason`, which every client shows.
    HttpResponse::ok("text/plain", body)
}

fn announce(shared: &Shared, rng: &mut SmallRng, query: &[u8], peer: SocketAddr) -> HttpResponse {
    let req = match AnnounceRequest::parse_query(query) {
        Ok(r) => r,
        Err(e) => return failure(shared, &e.to_string()),
    };
    // `ip=` only when configured (it lets a client list an address it does not hold);
    // either way the entry belongs to the connection's source (crate::swarm).
    let source = canonical(peer).ip();
    let ip = match req.ip {
        Some(ip) if shared.config.http.trust_ip_param => ip,
        _ => source,
    };
    let fabric = shared.fabric_of(req.fabric.as_deref(), ip);
    let mut resp = AnnounceResponse {
        interval: shared.swarm.interval,
        ..Default::default()
    };
    let counts = match ip {
        IpAddr::V4(v4) => {
            let a = Announce {
                peer_id: req.peer_id,
                addr: SocketAddrV4::new(v4, req.port),
                source,
                left: req.left,
                event: req.event,
                fabric,
                numwant: req.numwant,
            };
            shared.announce(req.info_hash, &a, rng, &mut resp.peers)
        }
        IpAddr::V6(v6) => {
            let a = Announce {
                peer_id: req.peer_id,
                addr: SocketAddrV6::new(v6, req.port, 0, 0),
                source,
                left: req.left,
                event: req.event,
                fabric,
                numwant: req.numwant,
            };
            shared.announce(req.info_hash, &a, rng, &mut resp.peers6)
        }
    };
    match counts {
        Ok(c) => {
            bump(&shared.counters(0).http_announce);
            resp.complete = c.seeders;
            resp.incomplete = c.leechers;
            resp.fabric_share = c.fabric_share;
            let mut body = Vec::new();
            resp.encode(&mut body);
            HttpResponse::ok("text/plain", body)
        }
        Err(refused) => failure(shared, &refused.to_string()),
    }
}

fn scrape(shared: &Shared, query: &[u8]) -> HttpResponse {
    let max = shared.config.udp.max_scrape_torrents;
    let hashes = match parse_scrape_query(query, max) {
        Ok(h) if h.is_empty() => return failure(shared, "full scrape is not supported"),
        Ok(h) => h,
        Err(e) => return failure(shared, &e.to_string()),
    };
    bump(&shared.counters(0).http_scrape);
    let files = hashes
        .into_iter()
        .map(|h| {
            let c = shared.scrape(&h);
            (
                h,
                ScrapeStats {
                    complete: c.seeders,
                    downloaded: c.completed,
                    incomplete: c.leechers,
                },
            )
        })
        .collect();
    let mut body = Vec::new();
    ScrapeResponse { files }.encode(&mut body);
    HttpResponse::ok("text/plain", body)
}

fn admin(shared: &Shared, req: &HttpRequest, path: &str) -> HttpResponse {
    if shared.admin_token.is_none() {
        bump(&shared.counters(0).http_bad_request);
        return HttpResponse::text(403, "admin API disabled: no token configured");
    }
    if !authorized(shared, req) {
        bump(&shared.counters(0).http_bad_request);
        return HttpResponse::text(401, "bad or missing bearer token");
    }
    let Ok(text) = std::str::from_utf8(&req.body) else {
        bump(&shared.counters(0).http_bad_request);
        return HttpResponse::text(400, "body must be hex info-hashes, one per line");
    };
    let hashes = match crate::access::parse_whitelist(text) {
        Ok(h) if !h.is_empty() => h,
        _ => {
            bump(&shared.counters(0).http_bad_request);
            return HttpResponse::text(400, "body must be hex info-hashes, one per line");
        }
    };
    let changed = hashes
        .iter()
        .filter(|h: &&InfoHash| {
            if path == "/register" {
                shared.register(**h)
            } else {
                shared.unregister(h)
            }
        })
        .count();
    tracing::info!(path, count = hashes.len(), changed, "admin request");
    HttpResponse::text(200, &format!("ok {changed}"))
}
