//! What the SAM template promises about cost and delivery, read from `template.yaml`
//! itself (cfn-lint and `sam validate` check its syntax in `make test`): Lambda's own
//! START/END/REPORT lines off by default, application lines filtered at INFO — the level
//! every metric line carries — and events packed several per Kinesis record by default;
//! and, resolved for each way of deploying it (one region, the home region of global
//! tables, another region reading its replicas), which tables exist, which table names
//! and ARNs the functions and their IAM policies get, and that no reference points at a
//! resource the mode does not create.

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

// ---- Every region: the template resolved for each way of deploying it ----
//
// A small CloudFormation evaluator (conditions, `!If`, `!Ref`, `!GetAtt`, `!Sub`,
// `!Select`, `!Split`, `!Join`, `AWS::NoValue`) resolves the template for the
// parameters of each mode, as CloudFormation would, so the assertions below read the
// resources, environment and IAM policies a stack in that mode really gets — and any
// reference to a resource that mode does not create fails the test.

use std::collections::BTreeMap;

/// The template as one deployment sees it.
struct Resolved {
    /// Parameter values (defaults, then the overrides) and pseudo parameters.
    values: BTreeMap<String, String>,
    template: Value,
    conditions: BTreeMap<String, bool>,
}

const ACCOUNT: &str = "123456789012";

/// What `!Ref AWS::NoValue` resolves to: dropped from the list or map holding it.
const NO_VALUE: &str = "<AWS::NoValue>";

impl Resolved {
    fn new(region: &str, overrides: &[(&str, &str)]) -> Resolved {
        let template = template();
        let mut values = BTreeMap::new();
        for (name, parameter) in template["Parameters"].as_mapping().expect("Parameters") {
            let name = name.as_str().expect("name").to_owned();
            let default = match &parameter["Default"] {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => panic!("parameter {name}: default {other:?}"),
            };
            values.insert(name, default);
        }
        for (name, value) in overrides {
            assert!(values.contains_key(*name), "no parameter {name}");
            values.insert((*name).to_owned(), (*value).to_owned());
        }
        for (name, value) in [
            ("AWS::Region", region),
            ("AWS::AccountId", ACCOUNT),
            ("AWS::Partition", "aws"),
            ("AWS::StackName", "flagfn"),
        ] {
            values.insert(name.to_owned(), value.to_owned());
        }
        let mut resolved = Resolved { values, template, conditions: BTreeMap::new() };
        let names: Vec<String> = resolved.template["Conditions"]
            .as_mapping()
            .expect("Conditions")
            .keys()
            .map(|k| k.as_str().expect("name").to_owned())
            .collect();
        for name in names {
            let value = resolved.condition(&name);
            resolved.conditions.insert(name, value);
        }
        resolved
    }

    fn condition(&self, name: &str) -> bool {
        if let Some(value) = self.conditions.get(name) {
            return *value;
        }
        let body = self.template["Conditions"][name].clone();
        assert!(!body.is_null(), "no condition {name}");
        self.truth(&body)
    }

    fn truth(&self, value: &Value) -> bool {
        let Value::Tagged(tagged) = value else { panic!("not a condition: {value:?}") };
        let args = tagged.value.as_sequence();
        match tagged.tag.to_string().as_str() {
            "!Equals" => {
                let args = args.expect("!Equals [a, b]");
                self.resolve(&args[0]) == self.resolve(&args[1])
            }
            "!Not" => !self.truth(&args.expect("!Not [c]")[0]),
            "!And" => args.expect("!And [...]").iter().all(|c| self.truth(c)),
            "!Or" => args.expect("!Or [...]").iter().any(|c| self.truth(c)),
            "!Condition" => self.condition(tagged.value.as_str().expect("!Condition name")),
            other => panic!("{other} in a condition"),
        }
    }

    /// Whether resource `name` exists in this deployment.
    fn exists(&self, name: &str) -> bool {
        let resource = &self.template["Resources"][name];
        !resource.is_null() && resource["Condition"].as_str().is_none_or(|c| self.condition(c))
    }

    /// The resources this deployment creates, by name, with their properties resolved.
    fn resources(&self) -> BTreeMap<String, Value> {
        let all = self.template["Resources"].as_mapping().expect("Resources");
        let names = all.keys().map(|k| k.as_str().expect("name").to_owned());
        names.filter(|n| self.exists(n)).map(|n| (n.clone(), self.resolve(&self.template["Resources"][&*n]))).collect()
    }

    /// The outputs of this deployment, resolved.
    fn outputs(&self) -> BTreeMap<String, Value> {
        let all = self.template["Outputs"].as_mapping().expect("Outputs");
        let mut outputs = BTreeMap::new();
        for (name, output) in all {
            if output["Condition"].as_str().is_none_or(|c| self.condition(c)) {
                outputs.insert(name.as_str().expect("name").to_owned(), self.resolve(&output["Value"]));
            }
        }
        outputs
    }

    /// A reference: a parameter's value, or `<Resource>` for a resource that exists.
    fn reference(&self, name: &str) -> Value {
        if let Some(value) = self.values.get(name) {
            return Value::from(value.as_str());
        }
        // SAM's generated function URL resource, `<Function>Url`.
        let url_of = name.strip_suffix("Url").filter(|_| self.template["Resources"][name].is_null());
        let known = self.exists(name) || url_of.is_some_and(|function| self.exists(function));
        assert!(known, "a reference to {name}, which this deployment does not create");
        Value::from(format!("<{name}>"))
    }

    fn attribute(&self, target: &str) -> Value {
        let (resource, attribute) = target.split_once('.').expect("Resource.Attribute");
        let reference = self.reference(resource);
        let reference = reference.as_str().expect("a resource");
        Value::from(format!("{}.{attribute}>", reference.trim_end_matches('>')))
    }

    fn substitute(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').expect("closing }") + start;
            let name = &rest[start + 2..end];
            let value = if name.contains('.') && !self.values.contains_key(name) {
                self.attribute(name)
            } else {
                self.reference(name)
            };
            out.push_str(value.as_str().expect("a string"));
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn resolve(&self, value: &Value) -> Value {
        match value {
            Value::Sequence(items) => Value::Sequence(
                items.iter().map(|i| self.resolve(i)).filter(|i| i.as_str() != Some(NO_VALUE)).collect(),
            ),
            Value::Mapping(map) => {
                let mut out = serde_yaml_ng::Mapping::new();
                for (k, v) in map {
                    let v = self.resolve(v);
                    if v.as_str() != Some(NO_VALUE) {
                        out.insert(k.clone(), v);
                    }
                }
                Value::Mapping(out)
            }
            Value::Tagged(tagged) => {
                let arg = &tagged.value;
                let list = || arg.as_sequence().expect("a list argument").clone();
                match tagged.tag.to_string().as_str() {
                    "!Ref" if arg.as_str() == Some("AWS::NoValue") => Value::from(NO_VALUE),
                    "!Ref" => self.reference(arg.as_str().expect("!Ref name")),
                    "!GetAtt" => self.attribute(arg.as_str().expect("!GetAtt Resource.Attribute")),
                    "!Sub" => Value::from(self.substitute(arg.as_str().expect("!Sub text"))),
                    "!If" => {
                        let args = list();
                        let chosen =
                            if self.condition(args[0].as_str().expect("condition")) { &args[1] } else { &args[2] };
                        self.resolve(chosen)
                    }
                    "!Select" => {
                        let args = list();
                        let index = args[0].as_u64().expect("index") as usize;
                        let items = self.resolve(&args[1]);
                        let items = items.as_sequence().expect("a list");
                        items.get(index).cloned().unwrap_or_else(|| panic!("!Select {index} of {items:?}"))
                    }
                    "!Split" => {
                        let args = list();
                        let text = self.resolve(&args[1]);
                        let separator = args[0].as_str().expect("separator");
                        Value::Sequence(text.as_str().expect("text").split(separator).map(Value::from).collect())
                    }
                    "!Join" => {
                        let args = list();
                        let items = self.resolve(&args[1]);
                        let items = items.as_sequence().expect("a list");
                        let parts: Vec<&str> = items.iter().map(|i| i.as_str().expect("a string")).collect();
                        Value::from(parts.join(args[0].as_str().expect("separator")))
                    }
                    other => panic!("{other} is not evaluated here"),
                }
            }
            other => other.clone(),
        }
    }
}

/// The three ways of deploying: one region (the default), the home region of global
/// tables, another region reading its replicas.
fn single() -> Resolved {
    Resolved::new("us-east-1", &[])
}

fn home() -> Resolved {
    Resolved::new("us-east-1", &[("ReplicaRegions", "eu-west-1,ap-southeast-2")])
}

fn replica() -> Resolved {
    Resolved::new(
        "eu-west-1",
        &[("HomeRegion", "us-east-1"), ("ReplicaFlagsTable", "flags-t"), ("ReplicaManifestTable", "manifest-t")],
    )
}

fn of_type(resources: &BTreeMap<String, Value>, kind: &str) -> Vec<String> {
    resources.iter().filter(|(_, r)| r["Type"].as_str() == Some(kind)).map(|(n, _)| n.clone()).collect()
}

/// The function's IAM statements, by Sid.
fn statements(resources: &BTreeMap<String, Value>, function: &str) -> BTreeMap<String, Value> {
    let policies = resources[function]["Properties"]["Policies"].as_sequence().expect("Policies").clone();
    let statements = policies[0]["Statement"].as_sequence().expect("Statement").clone();
    statements.into_iter().map(|s| (s["Sid"].as_str().expect("Sid").to_owned(), s)).collect()
}

fn env(resources: &BTreeMap<String, Value>, function: &str, name: &str) -> Value {
    resources[function]["Properties"]["Environment"]["Variables"][name].clone()
}

#[test]
fn by_default_the_tables_are_single_region_as_before() {
    let resolved = single();
    let resources = resolved.resources();
    assert_eq!(of_type(&resources, "AWS::DynamoDB::Table"), ["FlagsAuditTable", "FlagsTable", "ManifestTable"]);
    assert!(of_type(&resources, "AWS::DynamoDB::GlobalTable").is_empty());
    assert_eq!(env(&resources, "FlagFunction", "FLAGS_TABLE"), Value::from("<FlagsTable>"));
    assert_eq!(env(&resources, "FlagFunction", "MANIFEST_TABLE"), Value::from("<ManifestTable>"));
    let policy = statements(&resources, "FlagFunction");
    assert_eq!(policy["ReadFlags"]["Resource"], Value::from("<FlagsTable.Arn>"));
    assert_eq!(policy["ReadAndRecordManifest"]["Resource"], Value::from("<ManifestTable.Arn>"));
    let manifest_actions = policy["ReadAndRecordManifest"]["Action"].clone();
    assert_eq!(manifest_actions, serde_yaml_ng::from_str::<Value>("[dynamodb:GetItem, dynamodb:PutItem]").unwrap());
    assert_eq!(policy["ReadFlagChanges"]["Resource"], Value::from("<FlagsTable.Arn>/stream/*"));
    assert_eq!(resources["FlagChangesMapping"]["Properties"]["EventSourceArn"], Value::from("<FlagsTable.StreamArn>"));
    let outputs = resolved.outputs();
    assert_eq!(outputs["FlagsTableName"], Value::from("<FlagsTable>"));
    assert_eq!(outputs["FlagsAuditTableName"], Value::from("<FlagsAuditTable>"));
    assert_eq!(outputs["WriteRegion"], Value::from("us-east-1"));
}

#[test]
fn the_home_region_owns_global_tables_replicated_to_the_listed_regions() {
    let resolved = home();
    let resources = resolved.resources();
    assert!(of_type(&resources, "AWS::DynamoDB::Table").is_empty(), "no single-region table beside the global ones");
    let global = of_type(&resources, "AWS::DynamoDB::GlobalTable");
    assert_eq!(global, ["FlagsAuditGlobalTable", "FlagsGlobalTable", "ManifestGlobalTable"]);
    for name in &global {
        let properties = &resources[name]["Properties"];
        let regions: Vec<&str> = properties["Replicas"]
            .as_sequence()
            .expect("Replicas")
            .iter()
            .map(|r| r["Region"].as_str().expect("Region"))
            .collect();
        assert_eq!(regions, ["us-east-1", "eu-west-1", "ap-southeast-2"], "{name}");
        assert_eq!(properties["StreamSpecification"]["StreamViewType"].as_str(), Some("NEW_AND_OLD_IMAGES"), "{name}");
        assert_eq!(properties["BillingMode"].as_str(), Some("PAY_PER_REQUEST"), "{name}");
        assert_eq!(properties["SSESpecification"]["SSEEnabled"].as_bool(), Some(true), "{name}");
    }
    // Flags and audit keep point-in-time recovery in every replica, and survive the stack.
    for name in ["FlagsGlobalTable", "FlagsAuditGlobalTable"] {
        for replica in resources[name]["Properties"]["Replicas"].as_sequence().expect("Replicas") {
            let pitr = &replica["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"];
            assert_eq!(pitr.as_bool(), Some(true), "{name}: {replica:?}");
        }
        assert_eq!(resources[name]["DeletionPolicy"].as_str(), Some("Retain"), "{name}");
    }
    assert_eq!(env(&resources, "FlagFunction", "FLAGS_TABLE"), Value::from("<FlagsGlobalTable>"));
    assert_eq!(env(&resources, "FlagFunction", "MANIFEST_TABLE"), Value::from("<ManifestGlobalTable>"));
    let policy = statements(&resources, "FlagFunction");
    assert_eq!(policy["ReadFlags"]["Resource"], Value::from("<FlagsGlobalTable.Arn>"));
    assert_eq!(policy["ReadAndRecordManifest"]["Resource"], Value::from("<ManifestGlobalTable.Arn>"));
    assert_eq!(policy["ReadFlagChanges"]["Resource"], Value::from("<FlagsGlobalTable.Arn>/stream/*"));
    assert_eq!(
        resources["FlagChangesMapping"]["Properties"]["EventSourceArn"],
        Value::from("<FlagsGlobalTable.StreamArn>"),
        "the home region records every region's changes"
    );
    let outputs = resolved.outputs();
    assert_eq!(outputs["FlagsTableName"], Value::from("<FlagsGlobalTable>"));
    assert_eq!(outputs["ManifestTableName"], Value::from("<ManifestGlobalTable>"));
    assert_eq!(outputs["FlagsAuditTableName"], Value::from("<FlagsAuditGlobalTable>"));
    assert_eq!(outputs["WriteRegion"], Value::from("us-east-1"));

    // One listed region: exactly two replicas each (the padding yields no empty region).
    let two = Resolved::new("us-east-1", &[("ReplicaRegions", "eu-west-1")]).resources();
    let replicas = two["FlagsGlobalTable"]["Properties"]["Replicas"].as_sequence().expect("Replicas").len();
    assert_eq!(replicas, 2);
    // Four, the most the template takes.
    let five = Resolved::new("us-east-1", &[("ReplicaRegions", "eu-west-1,eu-central-1,ap-southeast-2,us-west-2")]);
    let replicas = five.resources()["ManifestGlobalTable"]["Properties"]["Replicas"].as_sequence().expect("list").len();
    assert_eq!(replicas, 5);
}

#[test]
fn another_region_creates_no_table_and_reads_its_local_replicas() {
    let resolved = replica();
    let resources = resolved.resources();
    let tables: Vec<&String> = resources
        .keys()
        .filter(|n| resources[*n]["Type"].as_str().is_some_and(|t| t.starts_with("AWS::DynamoDB::")))
        .collect();
    assert!(tables.is_empty(), "a replica stack creates no table: {tables:?}");
    assert!(!resources.contains_key("FlagChangesMapping"), "the home region alone records changes");
    assert!(resources.contains_key("FlagFunction") && resources.contains_key("EvaluationsStream"));
    assert_eq!(env(&resources, "FlagFunction", "FLAGS_TABLE"), Value::from("flags-t"));
    assert_eq!(env(&resources, "FlagFunction", "MANIFEST_TABLE"), Value::from("manifest-t"));
    let policy = statements(&resources, "FlagFunction");
    assert_eq!(policy["ReadFlags"]["Resource"], Value::from("arn:aws:dynamodb:eu-west-1:123456789012:table/flags-t"));
    assert_eq!(
        policy["ReadAndRecordManifest"]["Resource"],
        Value::from("arn:aws:dynamodb:eu-west-1:123456789012:table/manifest-t")
    );
    assert_eq!(
        policy["ReadAndRecordManifest"]["Action"],
        serde_yaml_ng::from_str::<Value>("[dynamodb:GetItem]").unwrap(),
        "a replica stack never writes the manifest"
    );
    assert!(!policy.contains_key("ReadFlagChanges"), "no stream read: {:?}", policy.keys());
    let outputs = resolved.outputs();
    assert_eq!(outputs["FlagsTableName"], Value::from("flags-t"));
    assert_eq!(outputs["ManifestTableName"], Value::from("manifest-t"));
    assert!(!outputs.contains_key("FlagsAuditTableName"));
    assert_eq!(outputs["WriteRegion"], Value::from("us-east-1"), "flagctl is sent to the home region");

    // The change stream function, when on, reads the same replica.
    let with_stream = Resolved::new(
        "eu-west-1",
        &[
            ("HomeRegion", "us-east-1"),
            ("ReplicaFlagsTable", "flags-t"),
            ("ReplicaManifestTable", "manifest-t"),
            ("EventStreamFunction", "true"),
        ],
    )
    .resources();
    assert_eq!(env(&with_stream, "StreamFunction", "MANIFEST_TABLE"), Value::from("manifest-t"));
    let stream_policy = statements(&with_stream, "StreamFunction");
    let read = &stream_policy["ReadManifest"]["Resource"];
    assert_eq!(*read, Value::from("arn:aws:dynamodb:eu-west-1:123456789012:table/manifest-t"));
}

/// The rules that stop a half-configured replica stack before it creates anything.
#[test]
fn a_replica_stack_must_name_its_tables_and_a_home_stack_not_list_itself() {
    let t = template();
    let rule = &t["Rules"]["ReplicaStackNamesItsTables"];
    let text = serde_yaml_ng::to_string(rule).expect("YAML");
    for needed in ["ReplicaFlagsTable", "ReplicaManifestTable", "HomeRegion", "ReplicaRegions"] {
        assert!(text.contains(needed), "the rule checks {needed}: {text}");
    }
    let rule = serde_yaml_ng::to_string(&t["Rules"]["HomeRegionIsNotAReplica"]).expect("YAML");
    assert!(rule.contains("!Contains") && rule.contains("AWS::Region"), "{rule}");
}
