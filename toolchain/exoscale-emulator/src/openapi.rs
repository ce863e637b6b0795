//! The Exoscale OpenAPI document as the emulator's router and validator.
//!
//! Routing: a request matches the path templates of the document (`/instance-pool/{id}:scale`)
//! and yields the operation's `operationId` and path parameters, so the emulator serves
//! exactly the paths the spec defines. Validation: request bodies are checked against the
//! operation's request schema, and tests check every response against its response schema.
//!
//! The validator is written here rather than taken from a JSON Schema crate because
//! OpenAPI 3.0's schema dialect is not any JSON Schema draft: `nullable`, boolean
//! `exclusiveMinimum`/`exclusiveMaximum` next to `minimum`/`maximum`, and `readOnly`
//! properties that requests must not be required to carry. The document uses only the
//! keywords handled below (checked by a test), and the messages read like the API's.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

/// The OpenAPI document: exoscale/python-exoscale @ 0875327 `exoscale/openapi.json`
/// (sha256 9969c611…3d0a, see ../openapi/README.md).
pub const DOCUMENT: &str = include_str!("../openapi/openapi-latest.json");

/// The parsed document, once per process.
pub fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| Spec::parse(DOCUMENT))
}

#[derive(Debug, Clone)]
pub struct Route {
    pub method: String,
    pub template: String,
    pub operation_id: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    /// `{name}` with an optional literal suffix (`{id}:scale`).
    Param {
        name: String,
        suffix: String,
    },
}

#[derive(Debug)]
pub struct Spec {
    pub doc: Value,
    routes: Vec<Route>,
}

/// A matched request.
#[derive(Debug, Clone)]
pub struct Match<'a> {
    pub route: &'a Route,
    pub params: BTreeMap<String, String>,
}

impl Spec {
    fn parse(text: &str) -> Self {
        let doc: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let mut routes = Vec::new();
        if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
            for (template, ops) in paths {
                let Some(ops) = ops.as_object() else { continue };
                for (method, op) in ops {
                    let Some(id) = op.get("operationId").and_then(Value::as_str) else {
                        continue;
                    };
                    routes.push(Route {
                        method: method.to_ascii_uppercase(),
                        template: template.clone(),
                        operation_id: id.to_string(),
                        segments: parse_template(template),
                    });
                }
            }
        }
        // Most specific first: more literal characters win (`{id}:scale` before `{id}`).
        routes.sort_by_key(|r| std::cmp::Reverse(literal_len(&r.segments)));
        Spec { doc, routes }
    }

    /// Every operation of the document.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for `method path` (path relative to `/v2`), or whether the path exists
    /// with another method (`Err(true)`, a 405) or not at all (`Err(false)`, a 404).
    pub fn find(&self, method: &str, path: &str) -> Result<Match<'_>, bool> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut path_exists = false;
        for r in &self.routes {
            if let Some(params) = match_segments(&r.segments, &parts) {
                if r.method == method {
                    return Ok(Match { route: r, params });
                }
                path_exists = true;
            }
        }
        Err(path_exists)
    }

    pub fn operation(&self, route: &Route) -> Option<&Value> {
        self.doc
            .get("paths")?
            .get(&route.template)?
            .get(route.method.to_ascii_lowercase())
    }

    /// The JSON schema of an operation's request body.
    pub fn request_schema(&self, route: &Route) -> Option<&Value> {
        self.operation(route)?
            .get("requestBody")?
            .get("content")?
            .get("application/json")?
            .get("schema")
    }

    /// The JSON schema of an operation's response with `status`.
    pub fn response_schema(&self, route: &Route, status: u16) -> Option<&Value> {
        self.operation(route)?
            .get("responses")?
            .get(status.to_string())?
            .get("content")?
            .get("application/json")?
            .get("schema")
    }

    /// Names of a query parameter's allowed values, if it is an enum.
    pub fn query_enum(&self, route: &Route, name: &str) -> Option<Vec<String>> {
        let params = self.operation(route)?.get("parameters")?.as_array()?;
        let p = params
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))?;
        let schema = self.resolve(p.get("schema")?)?;
        Some(
            schema
                .get("enum")?
                .as_array()?
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
        )
    }

    /// A component schema by name (`zone-name`).
    pub fn component(&self, name: &str) -> Option<&Value> {
        self.doc.get("components")?.get("schemas")?.get(name)
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> Option<&'a Value> {
        let mut s = schema;
        for _ in 0..32 {
            match s.get("$ref").and_then(Value::as_str) {
                Some(r) => s = self.component(r.strip_prefix("#/components/schemas/")?)?,
                None => return Some(s),
            }
        }
        None
    }

    /// Validates `value` against `schema`; `request` skips `readOnly` properties in
    /// `required`. Returns one message per problem, naming the field.
    pub fn validate(&self, schema: &Value, value: &Value, request: bool) -> Vec<String> {
        let mut errors = Vec::new();
        self.check(schema, value, "", request, &mut errors);
        errors
    }

    fn check(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        request: bool,
        errors: &mut Vec<String>,
    ) {
        let Some(schema) = self.resolve(schema) else {
            errors.push(format!("{}: unresolvable schema reference", field(at)));
            return;
        };
        if value.is_null() {
            if schema.get("nullable").and_then(Value::as_bool) != Some(true)
                && schema.get("type").is_some()
            {
                errors.push(format!("{}: must not be null", field(at)));
            }
            return;
        }
        if let Some(ty) = schema.get("type").and_then(Value::as_str) {
            let ok = match ty {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                _ => true,
            };
            if !ok {
                errors.push(format!("{}: expected {ty}, got {}", field(at), kind(value)));
                return;
            }
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            let list: Vec<String> = options.iter().map(|o| o.to_string()).collect();
            errors.push(format!(
                "{}: invalid value {value}, expected one of {}",
                field(at),
                list.join(", ")
            ));
        }
        match value {
            Value::String(s) => {
                let n = s.chars().count() as u64;
                if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                    && n < min
                {
                    errors.push(format!("{}: shorter than {min} characters", field(at)));
                }
                if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                    && n > max
                {
                    errors.push(format!("{}: longer than {max} characters", field(at)));
                }
                if let Some(p) = schema.get("pattern").and_then(Value::as_str)
                    && let Ok(re) = regex::Regex::new(p)
                    && !re.is_match(s)
                {
                    errors.push(format!("{}: {s:?} does not match {p}", field(at)));
                }
            }
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(0.0);
                let excl_min =
                    schema.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
                let excl_max =
                    schema.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
                if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                    && (x < min || (excl_min && x == min))
                {
                    let op = if excl_min { ">" } else { ">=" };
                    errors.push(format!("{}: must be {op} {min}", field(at)));
                }
                if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                    && (x > max || (excl_max && x == max))
                {
                    let op = if excl_max { "<" } else { "<=" };
                    errors.push(format!("{}: must be {op} {max}", field(at)));
                }
            }
            Value::Array(items) => {
                if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                    && items.len() as u64 > max
                {
                    errors.push(format!("{}: more than {max} items", field(at)));
                }
                if schema.get("uniqueItems").and_then(Value::as_bool) == Some(true) {
                    for (i, a) in items.iter().enumerate() {
                        if items[..i].contains(a) {
                            errors.push(format!("{}: duplicate item {a}", field(at)));
                        }
                    }
                }
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item_schema, item, &format!("{at}[{i}]"), request, errors);
                    }
                }
            }
            Value::Object(map) => {
                let props = schema.get("properties").and_then(Value::as_object);
                if let Some(required) = schema.get("required").and_then(Value::as_array) {
                    for r in required.iter().filter_map(Value::as_str) {
                        let read_only = props
                            .and_then(|p| p.get(r))
                            .and_then(|p| self.resolve(p))
                            .and_then(|p| p.get("readOnly"))
                            .and_then(Value::as_bool)
                            == Some(true);
                        let exempt = request && read_only;
                        if !map.contains_key(r) && !exempt {
                            errors.push(format!("{}: missing required field", field(&join(at, r))));
                        }
                    }
                }
                if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
                    && (map.len() as u64) < min
                {
                    errors.push(format!("{}: fewer than {min} properties", field(at)));
                }
                for (k, v) in map {
                    match props.and_then(|p| p.get(k)) {
                        Some(s) => self.check(s, v, &join(at, k), request, errors),
                        None => match schema.get("additionalProperties") {
                            Some(Value::Bool(false)) => {
                                errors.push(format!("{}: unknown field", field(&join(at, k))))
                            }
                            Some(s @ Value::Object(_)) => {
                                self.check(s, v, &join(at, k), request, errors)
                            }
                            // Unknown fields are ignored like the API's JSON decoder does.
                            _ => {}
                        },
                    }
                }
            }
            _ => {}
        }
    }
}

fn join(at: &str, k: &str) -> String {
    if at.is_empty() {
        k.to_string()
    } else {
        format!("{at}.{k}")
    }
}

fn field(at: &str) -> String {
    if at.is_empty() {
        "body".to_string()
    } else {
        format!("field {at:?}")
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn parse_template(t: &str) -> Vec<Segment> {
    t.trim_start_matches('/')
        .split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.split_once('}')) {
                Some((name, suffix)) => Segment::Param {
                    name: name.to_string(),
                    suffix: suffix.to_string(),
                },
                None => Segment::Literal(seg.to_string()),
            },
        )
        .collect()
}

fn literal_len(segs: &[Segment]) -> usize {
    segs.iter()
        .map(|s| match s {
            Segment::Literal(l) => l.len() + 1,
            Segment::Param { suffix, .. } => suffix.len(),
        })
        .sum()
}

fn match_segments(segs: &[Segment], parts: &[&str]) -> Option<BTreeMap<String, String>> {
    if segs.len() != parts.len() {
        return None;
    }
    let mut params = BTreeMap::new();
    for (s, p) in segs.iter().zip(parts) {
        match s {
            Segment::Literal(l) if l == p => {}
            Segment::Literal(_) => return None,
            Segment::Param { name, suffix } => {
                let value = p.strip_suffix(suffix.as_str())?;
                if value.is_empty() || value.contains(':') {
                    return None;
                }
                params.insert(name.clone(), value.to_string());
            }
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_parses_and_routes() {
        let s = spec();
        assert!(s.routes().len() > 300, "{}", s.routes().len());
        let m = s.find(
            "PUT",
            "/instance-pool/8b9d4f1c-1111-4222-8333-444455556666:scale",
        );
        let m = m.unwrap_or_else(|_| panic!("no route"));
        assert_eq!(m.route.operation_id, "scale-instance-pool");
        assert_eq!(m.params["id"], "8b9d4f1c-1111-4222-8333-444455556666");
        let m = s.find("GET", "/instance-pool/8b9d4f1c-1111-4222-8333-444455556666");
        assert_eq!(
            m.map(|m| m.route.operation_id.clone()).ok().as_deref(),
            Some("get-instance-pool")
        );
        assert!(matches!(s.find("PATCH", "/instance-pool"), Err(true)));
        assert!(matches!(s.find("GET", "/no-such-thing"), Err(false)));
    }

    #[test]
    fn the_document_uses_only_keywords_the_validator_knows() {
        let known = [
            "type",
            "description",
            "$ref",
            "format",
            "properties",
            "minimum",
            "title",
            "maxLength",
            "maximum",
            "items",
            "minLength",
            "exclusiveMinimum",
            "required",
            "example",
            "enum",
            "readOnly",
            "exclusiveMaximum",
            "nullable",
            "pattern",
            "default",
            "additionalProperties",
            "uniqueItems",
            "maxItems",
            "minProperties",
            "deprecated",
            "writeOnly",
        ];
        fn walk(v: &Value, schema: bool, known: &[&str], bad: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    for (k, x) in m {
                        if schema && !known.contains(&k.as_str()) && !k.starts_with("x-") {
                            bad.push(k.clone());
                        }
                        match k.as_str() {
                            "schema" | "items" | "additionalProperties" => {
                                walk(x, true, known, bad)
                            }
                            "properties" | "schemas" if x.is_object() => {
                                for s in x.as_object().into_iter().flat_map(|o| o.values()) {
                                    walk(s, true, known, bad);
                                }
                            }
                            "example" | "default" | "enum" => {}
                            _ => walk(x, false, known, bad),
                        }
                    }
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, schema, known, bad)),
                _ => {}
            }
        }
        let mut bad = Vec::new();
        walk(&spec().doc, false, &known, &mut bad);
        bad.sort();
        bad.dedup();
        assert!(bad.is_empty(), "unhandled schema keywords: {bad:?}");
    }

    #[test]
    fn validation_messages_name_the_field() {
        let s = spec();
        let Ok(m) = s.find("POST", "/instance-pool") else {
            panic!("route")
        };
        let schema = s.request_schema(m.route).cloned().unwrap_or_default();
        let errs = s.validate(&schema, &serde_json::json!({"name": "x", "size": 0, "disk-size": 5, "public-ip-assignment": "ipv9"}), true);
        let text = errs.join("\n");
        assert!(text.contains("\"size\": must be > 0"), "{text}");
        assert!(text.contains("\"disk-size\": must be >= 10"), "{text}");
        assert!(
            text.contains("\"public-ip-assignment\": invalid value"),
            "{text}"
        );
        assert!(
            text.contains("\"instance-type\": missing required field"),
            "{text}"
        );
        assert!(
            text.contains("\"template\": missing required field"),
            "{text}"
        );
    }
}

#[cfg(test)]
mod zone_tests {
    #[test]
    fn forge_knows_the_zones_of_the_document() {
        let doc: Vec<String> = super::spec()
            .component("zone-name")
            .and_then(|z| z.get("enum"))
            .and_then(|e| e.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let forge: Vec<String> = forge_schema::platform::ZONES
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(doc, forge);
    }
}
