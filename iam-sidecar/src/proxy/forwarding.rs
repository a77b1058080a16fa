//! The forwarding headers the upstream gets: `X-Forwarded-For`/`-Proto`/`-Host` and the
//! trace context, from what the client sent before its hop-by-hop headers went.

use hyper::Uri;
use hyper::header::{HOST, HeaderMap, HeaderName, HeaderValue};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The W3C trace context the sidecar passes on (and continues, when tracing is on).
const TRACE_CONTEXT: [HeaderName; 2] = [
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
];

/// What the sidecar passes on about the request as the client sent it, taken before the
/// hop-by-hop headers go, so that a client's `Connection` header cannot remove it.
#[derive(Debug)]
pub(super) struct Received {
    host: Option<HeaderValue>,
    trace_context: Vec<(HeaderName, HeaderValue)>,
}

impl Received {
    pub(super) fn take(headers: &HeaderMap, uri: &Uri) -> Received {
        Received {
            host: headers
                .get(HOST)
                .cloned()
                .or_else(|| crate::forward::authority_as_host(uri)),
            trace_context: TRACE_CONTEXT
                .iter()
                .filter_map(|name| Some((name.clone(), headers.get(name)?.clone())))
                .collect(),
        }
    }
}

/// Appends the client to `X-Forwarded-For`, fills `X-Forwarded-Proto`/`-Host` if absent and
/// passes the trace context on. Runs after the hop-by-hop headers were removed.
pub(super) fn add_forwarding_headers(
    headers: &mut HeaderMap,
    client_ip: Option<String>,
    received: Received,
) {
    if let Some(ip) = client_ip {
        let chain = match headers
            .get(&X_FORWARDED_FOR)
            .and_then(|value| value.to_str().ok())
        {
            Some(existing) => format!("{existing}, {ip}"),
            None => ip,
        };
        if let Ok(chain) = HeaderValue::from_str(&chain) {
            headers.insert(X_FORWARDED_FOR, chain);
        }
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if let Some(host) = received.host
        && !headers.contains_key(&X_FORWARDED_HOST)
    {
        headers.insert(X_FORWARDED_HOST, host);
    }
    // When tracing is on, the upstream call replaces these with the sidecar's own span.
    for (name, value) in received.trace_context {
        headers.insert(name, value);
    }
}
