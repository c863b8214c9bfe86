//! Builders for the records a plugin returns.

use crate::{
    Change, Descriptor, Field, Finding, Outcome, ParamSpec, ParamType, ParamValue, PluginScope,
    Severity,
};

impl Descriptor {
    /// A device-scoped plugin with no parameters.
    ///
    /// # Example
    ///
    /// ```
    /// use steward_sdk::{Descriptor, ParamSpec, PluginScope};
    ///
    /// let d = Descriptor::new("patching", "1.0.0", "Keeps packages current")
    ///     .param(ParamSpec::integer("max-packages", "Most packages per run").default_integer(50))
    ///     .scope(PluginScope::Device);
    /// assert_eq!(d.params.len(), 1);
    /// ```
    pub fn new(name: &str, version: &str, summary: &str) -> Self {
        Descriptor {
            name: name.to_string(),
            version: version.to_string(),
            summary: summary.to_string(),
            params: Vec::new(),
            scope: PluginScope::Device,
        }
    }

    /// Adds a parameter.
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::{Descriptor, ParamSpec};
    /// let d = Descriptor::new("x", "0.1.0", "x").param(ParamSpec::boolean("dry", "Only look"));
    /// assert_eq!(d.params[0].name, "dry");
    /// ```
    pub fn param(mut self, spec: ParamSpec) -> Self {
        self.params.push(spec);
        self
    }

    /// Sets what the plugin sees: one device, or every device of a tenant.
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::{Descriptor, PluginScope};
    /// let d = Descriptor::new("refresh-planner", "0.1.0", "Plans refreshes").scope(PluginScope::Tenant);
    /// assert_eq!(d.scope, PluginScope::Tenant);
    /// ```
    pub fn scope(mut self, scope: PluginScope) -> Self {
        self.scope = scope;
        self
    }
}

impl ParamSpec {
    fn of(name: &str, ty: ParamType, description: &str) -> Self {
        ParamSpec {
            name: name.to_string(),
            type_: ty,
            description: description.to_string(),
            default: None,
            required: false,
            required_to_remediate: false,
            pattern: None,
        }
    }

    /// A boolean parameter.
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::ParamSpec;
    /// let p = ParamSpec::boolean("security-only", "Install security updates only").default_boolean(true);
    /// ```
    pub fn boolean(name: &str, description: &str) -> Self {
        Self::of(name, ParamType::Boolean, description)
    }

    /// An integer parameter.
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::ParamSpec;
    /// let p = ParamSpec::integer("max-packages", "Most packages per run").default_integer(50);
    /// ```
    pub fn integer(name: &str, description: &str) -> Self {
        Self::of(name, ParamType::Integer, description)
    }

    /// A float parameter.
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::ParamSpec;
    /// let p = ParamSpec::float("max-wear", "Battery wear that needs a refresh");
    /// ```
    pub fn float(name: &str, description: &str) -> Self {
        Self::of(name, ParamType::Float, description)
    }

    /// A text parameter.
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::ParamSpec;
    /// let p = ParamSpec::text("queue", "Ticket queue").default_text("helpdesk");
    /// ```
    pub fn text(name: &str, description: &str) -> Self {
        Self::of(name, ParamType::Text, description)
    }

    /// A list-of-text parameter, given as comma-separated text on the
    /// command line.
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::ParamSpec;
    /// let p = ParamSpec::text_list("exclude", "Package patterns to hold back");
    /// ```
    pub fn text_list(name: &str, description: &str) -> Self {
        Self::of(name, ParamType::TextList, description)
    }

    /// Marks the parameter as required.
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::ParamSpec;
    /// let p = ParamSpec::text("user", "Account to unlock").required();
    /// assert!(p.required);
    /// ```
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Marks the parameter as required to remediate (and plan) but not to
    /// check; the host refuses a remediation without it.
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::ParamSpec;
    /// let p = ParamSpec::text("ticket", "Help-desk ticket").required_to_remediate();
    /// assert!(p.required_to_remediate && !p.required);
    /// ```
    pub fn required_to_remediate(mut self) -> Self {
        self.required_to_remediate = true;
        self
    }

    /// A regular expression each text value must match whole, checked by
    /// the host before the run.
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::ParamSpec;
    /// let p = ParamSpec::text("ticket", "Help-desk ticket").pattern("HD-[0-9]+");
    /// assert_eq!(p.pattern.as_deref(), Some("HD-[0-9]+"));
    /// ```
    pub fn pattern(mut self, pattern: &str) -> Self {
        self.pattern = Some(pattern.to_string());
        self
    }

    /// Default for a boolean parameter.
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::{ParamSpec, ParamValue};
    /// let p = ParamSpec::boolean("b", "b").default_boolean(true);
    /// assert_eq!(p.default, Some(ParamValue::Boolean(true)));
    /// ```
    pub fn default_boolean(mut self, value: bool) -> Self {
        self.default = Some(ParamValue::Boolean(value));
        self
    }

    /// Default for an integer parameter.
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::{ParamSpec, ParamValue};
    /// let p = ParamSpec::integer("n", "n").default_integer(3);
    /// assert_eq!(p.default, Some(ParamValue::Integer(3)));
    /// ```
    pub fn default_integer(mut self, value: i64) -> Self {
        self.default = Some(ParamValue::Integer(value));
        self
    }

    /// Default for a float parameter.
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::{ParamSpec, ParamValue};
    /// let p = ParamSpec::float("f", "f").default_float(0.5);
    /// assert_eq!(p.default, Some(ParamValue::Float(0.5)));
    /// ```
    pub fn default_float(mut self, value: f64) -> Self {
        self.default = Some(ParamValue::Float(value));
        self
    }

    /// Default for a text parameter.
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::{ParamSpec, ParamValue};
    /// let p = ParamSpec::text("q", "q").default_text("helpdesk");
    /// assert_eq!(p.default, Some(ParamValue::Text("helpdesk".into())));
    /// ```
    pub fn default_text(mut self, value: &str) -> Self {
        self.default = Some(ParamValue::Text(value.to_string()));
        self
    }

    /// Default for a text-list parameter.
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::{ParamSpec, ParamValue};
    /// let p = ParamSpec::text_list("l", "l").default_text_list(&["wheel", "sudo"]);
    /// assert_eq!(p.default, Some(ParamValue::TextList(vec!["wheel".into(), "sudo".into()])));
    /// ```
    pub fn default_text_list(mut self, values: &[&str]) -> Self {
        self.default = Some(ParamValue::TextList(
            values.iter().map(|s| s.to_string()).collect(),
        ));
        self
    }
}

impl Finding {
    /// A finding with an id, a severity and a one-line summary.
    ///
    /// # Example
    ///
    /// ```
    /// use steward_sdk::{Finding, Severity};
    ///
    /// let f = Finding::new("pending-security:openssl", Severity::Critical, "Security update pending")
    ///     .detail("openssl 3.0.11 -> 3.0.15, pending 9 days")
    ///     .resource("openssl")
    ///     .field("days-pending", "9");
    /// assert_eq!(f.fields.len(), 1);
    /// ```
    pub fn new(id: impl Into<String>, severity: Severity, summary: impl Into<String>) -> Self {
        Finding {
            id: id.into(),
            severity,
            summary: summary.into(),
            detail: String::new(),
            resource: String::new(),
            fields: Vec::new(),
        }
    }

    /// Sets the longer explanation.
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::{Finding, Severity};
    /// let f = Finding::new("x", Severity::Info, "x").detail("more");
    /// assert_eq!(f.detail, "more");
    /// ```
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// Sets the resource concerned.
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::{Finding, Severity};
    /// let f = Finding::new("x", Severity::Info, "x").resource("/dev/sda");
    /// assert_eq!(f.resource, "/dev/sda");
    /// ```
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = resource.into();
        self
    }

    /// Adds a key/value fact.
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::{Finding, Severity};
    /// let f = Finding::new("x", Severity::Info, "x").field("k", "v");
    /// assert_eq!(f.field_value("k"), Some("v"));
    /// ```
    pub fn field(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.push(Field {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// The value of a field added with [`Finding::field`].
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::{Finding, Severity};
    /// let f = Finding::new("x", Severity::Info, "x").field("days", "3");
    /// assert_eq!(f.field_value("days"), Some("3"));
    /// assert_eq!(f.field_value("nope"), None);
    /// ```
    pub fn field_value(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.key == key)
            .map(|f| f.value.as_str())
    }
}

impl Change {
    /// A change of `kind` to `target`, applied or planned as the capability
    /// call that made it reported.
    ///
    /// # Example
    ///
    /// ```
    /// use steward_sdk::{Change, Outcome};
    ///
    /// let c = Change::new("package-upgrade", "openssl", Outcome::Planned)
    ///     .description("Upgrade openssl")
    ///     .before("3.0.11")
    ///     .after("3.0.15");
    /// assert_eq!(c.after.as_deref(), Some("3.0.15"));
    /// ```
    pub fn new(kind: impl Into<String>, target: impl Into<String>, outcome: Outcome) -> Self {
        Change {
            kind: kind.into(),
            target: target.into(),
            description: String::new(),
            before: None,
            after: None,
            outcome,
        }
    }

    /// Sets the description for humans.
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::{Change, Outcome};
    /// let c = Change::new("unlock", "jdoe", Outcome::Applied).description("Unlocked jdoe");
    /// assert_eq!(c.description, "Unlocked jdoe");
    /// ```
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Sets the state before the change.
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::{Change, Outcome};
    /// let c = Change::new("unlock", "jdoe", Outcome::Applied).before("locked");
    /// assert_eq!(c.before.as_deref(), Some("locked"));
    /// ```
    pub fn before(mut self, before: impl Into<String>) -> Self {
        self.before = Some(before.into());
        self
    }

    /// Sets the state after the change.
    ///
    /// # Example
    ///
    /// ```
    /// # use steward_sdk::{Change, Outcome};
    /// let c = Change::new("unlock", "jdoe", Outcome::Applied).after("unlocked");
    /// assert_eq!(c.after.as_deref(), Some("unlocked"));
    /// ```
    pub fn after(mut self, after: impl Into<String>) -> Self {
        self.after = Some(after.into());
        self
    }
}
