//! Which handler a method and path go to. Every path works with or without
//! its trailing slash. [`ROUTES`] lists every route; the OpenAPI document is
//! tested against it.

use hyper::Method;

/// A matched route with its path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
    PipelineAccept,
    PipelineSync,
    RunList,
    RunDetail(String),
    RunResume(String),
    DefinitionList,
    DefinitionReload,
    DefinitionDetail(String),
    DefinitionValidate(String),
    DefinitionExecute(String),
    WebhookProbe,
    Webhook(Option<String>),
    IncidentList,
    IncidentDetail(String),
}

impl Route {
    /// Routes anyone may call, token or not.
    pub fn is_open(&self) -> bool {
        matches!(self, Route::Healthz | Route::Readyz | Route::WebhookProbe)
    }
}

/// Every route: its path pattern (as in openapi.json) and methods.
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/healthz", &["get"]),
    ("/readyz", &["get"]),
    ("/metrics", &["get"]),
    ("/openapi.json", &["get"]),
    ("/orchestration/pipeline/", &["post"]),
    ("/orchestration/pipeline/sync/", &["post"]),
    ("/orchestration/pipelines/", &["get"]),
    ("/orchestration/pipeline/{run_id}/", &["get"]),
    ("/orchestration/pipeline/{run_id}/resume/", &["post"]),
    ("/orchestration/definitions/", &["get"]),
    ("/orchestration/definitions/reload/", &["post"]),
    ("/orchestration/definitions/{name}/", &["get"]),
    ("/orchestration/definitions/{name}/validate/", &["post"]),
    ("/orchestration/definitions/{name}/execute/", &["post"]),
    ("/alerts/webhook/", &["get", "post"]),
    ("/alerts/webhook/{driver}/", &["get", "post"]),
    ("/alerts/incidents/", &["get"]),
    ("/alerts/incidents/{id}/", &["get"]),
];

pub enum Miss {
    NotFound,
    /// The path exists; these methods are allowed on it.
    MethodNotAllowed(&'static str),
}

/// Matches a request; on success also returns the route's pattern, the
/// label for metrics and logs.
pub fn route(method: &Method, path: &str) -> Result<(Route, &'static str), Miss> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    let one = |ok: bool, route: Route, pattern: &'static str, allow: &'static str| {
        if ok {
            Ok((route, pattern))
        } else {
            Err(Miss::MethodNotAllowed(allow))
        }
    };
    match segments.as_slice() {
        ["healthz"] => one(get, Route::Healthz, "/healthz", "GET"),
        ["readyz"] => one(get, Route::Readyz, "/readyz", "GET"),
        ["metrics"] => one(get, Route::Metrics, "/metrics", "GET"),
        ["openapi.json"] => one(get, Route::OpenApi, "/openapi.json", "GET"),
        ["orchestration", "pipeline"] => one(
            post,
            Route::PipelineAccept,
            "/orchestration/pipeline/",
            "POST",
        ),
        ["orchestration", "pipeline", "sync"] if post => {
            Ok((Route::PipelineSync, "/orchestration/pipeline/sync/"))
        }
        ["orchestration", "pipelines"] => {
            one(get, Route::RunList, "/orchestration/pipelines/", "GET")
        }
        ["orchestration", "pipeline", id] => one(
            get,
            Route::RunDetail(id.to_string()),
            "/orchestration/pipeline/{run_id}/",
            "GET",
        ),
        ["orchestration", "pipeline", id, "resume"] => one(
            post,
            Route::RunResume(id.to_string()),
            "/orchestration/pipeline/{run_id}/resume/",
            "POST",
        ),
        ["orchestration", "definitions"] => one(
            get,
            Route::DefinitionList,
            "/orchestration/definitions/",
            "GET",
        ),
        ["orchestration", "definitions", "reload"] if post => Ok((
            Route::DefinitionReload,
            "/orchestration/definitions/reload/",
        )),
        ["orchestration", "definitions", name] => one(
            get,
            Route::DefinitionDetail(name.to_string()),
            "/orchestration/definitions/{name}/",
            "GET",
        ),
        ["orchestration", "definitions", name, "validate"] => one(
            post,
            Route::DefinitionValidate(name.to_string()),
            "/orchestration/definitions/{name}/validate/",
            "POST",
        ),
        ["orchestration", "definitions", name, "execute"] => one(
            post,
            Route::DefinitionExecute(name.to_string()),
            "/orchestration/definitions/{name}/execute/",
            "POST",
        ),
        ["alerts", "incidents"] => one(get, Route::IncidentList, "/alerts/incidents/", "GET"),
        ["alerts", "incidents", id] => one(
            get,
            Route::IncidentDetail(id.to_string()),
            "/alerts/incidents/{id}/",
            "GET",
        ),
        ["alerts", "webhook"] | ["alerts", "webhook", _] => {
            let pattern = if segments.len() == 2 {
                "/alerts/webhook/"
            } else {
                "/alerts/webhook/{driver}/"
            };
            if get {
                Ok((Route::WebhookProbe, pattern))
            } else if post {
                Ok((
                    Route::Webhook(segments.get(2).map(|s| s.to_string())),
                    pattern,
                ))
            } else {
                Err(Miss::MethodNotAllowed("GET, POST"))
            }
        }
        _ => Err(Miss::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_slash_is_optional() {
        for path in ["/orchestration/pipelines", "/orchestration/pipelines/"] {
            assert!(matches!(route(&Method::GET, path), Ok((Route::RunList, _))));
        }
    }

    #[test]
    fn path_parameters_and_wrong_methods() {
        assert!(matches!(
            route(&Method::GET, "/orchestration/pipeline/01ABC/"),
            Ok((Route::RunDetail(id), _)) if id == "01ABC"
        ));
        assert!(matches!(
            route(&Method::DELETE, "/orchestration/pipeline/01ABC/"),
            Err(Miss::MethodNotAllowed("GET"))
        ));
        assert!(matches!(route(&Method::GET, "/nope"), Err(Miss::NotFound)));
        assert!(matches!(
            route(&Method::POST, "/alerts/webhook/grafana"),
            Ok((Route::Webhook(Some(d)), _)) if d == "grafana"
        ));
    }
}
