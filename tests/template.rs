//! What the SAM template promises about cost and delivery, read from `template.yaml`
//! itself (cfn-lint and `sam validate` check its syntax in `make test`): Lambda's own
//! START/END/REPORT lines off by default, application lines filtered at INFO — the level
//! every metric line carries — and events packed several per Kinesis record by default.

use serde_yaml_ng::Value;

fn template() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).expect("template.yaml");
    serde_yaml_ng::from_str(&text).expect("template.yaml is YAML")
}

/// `!Ref NAME` as the YAML parser reads it: a tagged value.
fn referenced(value: &Value) -> Option<String> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "!Ref" => tagged.value.as_str().map(str::to_owned),
        _ => None,
    }
}

fn parameter_default(template: &Value, name: &str) -> String {
    let default = &template["Parameters"][name]["Default"];
    default.as_str().map(str::to_owned).unwrap_or_else(|| panic!("parameter {name} has a string Default: {default:?}"))
}

#[test]
fn platform_lines_are_off_and_metric_lines_always_delivered() {
    let t = template();
    let logging = &t["Resources"]["FlagFunction"]["Properties"]["LoggingConfig"];
    assert_eq!(logging["LogFormat"].as_str(), Some("JSON"), "level filtering needs the JSON format");
    let system = referenced(&logging["SystemLogLevel"]).expect("SystemLogLevel: !Ref PlatformLogLevel");
    assert_eq!(parameter_default(&t, &system), "WARN", "START/END/REPORT are INFO: not written by default");
    // Metric (EMF) lines say "level":"INFO" (checked on every rendered line in the
    // metrics tests): the application filter must let INFO through, and be fixed.
    assert_eq!(logging["ApplicationLogLevel"].as_str(), Some("INFO"));
}

#[test]
fn events_are_packed_by_default_and_the_switch_is_documented() {
    let t = template();
    let variables = &t["Resources"]["FlagFunction"]["Properties"]["Environment"]["Variables"];
    let parameter = referenced(&variables["EVENTS_KPL_AGGREGATION"]).expect("EVENTS_KPL_AGGREGATION: !Ref ...");
    assert_eq!(parameter_default(&t, &parameter), "true");
    let allowed = t["Parameters"][&*parameter]["AllowedValues"].as_sequence().expect("AllowedValues").clone();
    assert_eq!(allowed, vec![Value::from("true"), Value::from("false")]);
    let mode = &t["Resources"]["EvaluationsStream"]["Properties"]["StreamModeDetails"]["StreamMode"];
    assert_eq!(parameter_default(&t, &referenced(mode).expect("StreamMode: !Ref ...")), "ON_DEMAND");
}
