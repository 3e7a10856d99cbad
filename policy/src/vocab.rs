//! The closed vocabulary of the profile: policy types, actions, operands and operators.
//!
//! Every enum maps to one compact JSON-LD term and one absolute IRI; anything else is outside
//! the profile and refused by the parsers.

/// The ODRL 2.2 namespace.
pub const ODRL: &str = "http://www.w3.org/ns/odrl/2/";
/// The namespace of the profile's own terms (left operands and policy metadata).
pub const ALLMENDE: &str = "urn:allmende:odrl:";
/// The profile's IRI, the only value accepted for a policy's `profile`.
pub const PROFILE_IRI: &str = "urn:allmende:odrl-profile:1";

macro_rules! vocab {
    ($(#[$m:meta])* $name:ident, $ns:expr, { $($(#[$vm:meta])* $var:ident => $term:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vm])* $var),+
        }
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            /// The compact JSON-LD term.
            pub fn term(self) -> &'static str {
                match self { $($name::$var => $term),+ }
            }
            /// The absolute IRI.
            pub fn iri(self) -> String {
                format!("{}{}", $ns, self.term())
            }
            /// The value whose compact term is `term`.
            pub fn from_term(term: &str) -> Option<$name> {
                match term { $($term => Some($name::$var),)+ _ => None }
            }
            /// The value whose absolute IRI is `iri`.
            pub fn from_iri(iri: &str) -> Option<$name> {
                iri.strip_prefix($ns).and_then($name::from_term)
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.term())
            }
        }
    };
}

vocab!(
    /// The policy types of the profile.
    PolicyKind, ODRL, {
        /// `Set`: the node's own rules, no party requirements.
        Set => "Set",
        /// `Offer`: published with a dataset; needs an assigner.
        Offer => "Offer",
        /// `Agreement`: countersigned; needs an assigner and an assignee.
        Agreement => "Agreement",
    }
);

vocab!(
    /// The actions a permission or prohibition may name.
    Action, ODRL, {
        /// `use`: every other action is included in it.
        Use => "use",
        /// `read` (row-level access).
        Read => "read",
        /// `aggregate` (aggregate queries).
        Aggregate => "aggregate",
        /// `derive` (derived datasets).
        Derive => "derive",
        /// `distribute` (passing results on).
        Distribute => "distribute",
    }
);

impl Action {
    /// The actions this action covers: itself and everything transitively `includedIn` it.
    pub fn covers(self) -> &'static [Action] {
        match self {
            Action::Use => Action::ALL,
            Action::Read => &[Action::Read],
            Action::Aggregate => &[Action::Aggregate],
            Action::Derive => &[Action::Derive],
            Action::Distribute => &[Action::Distribute],
        }
    }
    /// The action this one is `includedIn`, if any.
    pub fn included_in(self) -> Option<Action> {
        match self {
            Action::Use => None,
            _ => Some(Action::Use),
        }
    }
    /// Index into per-action tables.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

vocab!(
    /// The actions a duty (or policy-level obligation) may name.
    DutyAction, ODRL, {
        /// `delete` the data (usually with a time constraint).
        Delete => "delete",
        /// `attribute` the provider.
        Attribute => "attribute",
        /// `inform` the provider.
        Inform => "inform",
        /// `anonymize` the data.
        Anonymize => "anonymize",
    }
);

vocab!(
    /// ODRL left operands of the profile (the profile's own ones are separate).
    OdrlOperand, ODRL, {
        /// `dateTime`.
        DateTime => "dateTime",
        /// `elapsedTime`.
        ElapsedTime => "elapsedTime",
        /// `count`.
        Count => "count",
        /// `purpose`.
        Purpose => "purpose",
        /// `spatial`.
        Spatial => "spatial",
        /// `recipient`.
        Recipient => "recipient",
    }
);

vocab!(
    /// The profile's own left operands.
    ProfileOperand, ALLMENDE, {
        /// `queryShape`: `row` or `aggregate`.
        QueryShape => "queryShape",
        /// `minGroupSize`: the smallest group in an aggregate result (k).
        MinGroupSize => "minGroupSize",
        /// `allowedColumns`: the requested columns.
        AllowedColumns => "allowedColumns",
        /// `orgRole`: the principal's roles.
        OrgRole => "orgRole",
        /// `terms`: what the request is decided under, `offer` or `agreement`.
        Terms => "terms",
    }
);

/// A left operand of the profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeftOperand {
    /// `dateTime`: the request time (D3).
    DateTime,
    /// `elapsedTime`: request time minus first use (D2).
    ElapsedTime,
    /// `count`: uses including this one (D1).
    Count,
    /// `purpose`: the request's purpose IRI (D7).
    Purpose,
    /// `spatial`: the request's location code (D6).
    Spatial,
    /// `recipient`: the principal's organisation (D5).
    Recipient,
    /// `queryShape`: `row` or `aggregate`.
    QueryShape,
    /// `minGroupSize`: the request's smallest group size.
    MinGroupSize,
    /// `allowedColumns`: the requested columns (a set).
    AllowedColumns,
    /// `orgRole`: the principal's roles (a set).
    OrgRole,
    /// `terms`: `offer` (the dataset's published policy) or `agreement` (one the asker
    /// concluded for it).
    Terms,
}

impl LeftOperand {
    /// Every left operand.
    pub const ALL: &'static [LeftOperand] = &[
        LeftOperand::DateTime,
        LeftOperand::ElapsedTime,
        LeftOperand::Count,
        LeftOperand::Purpose,
        LeftOperand::Spatial,
        LeftOperand::Recipient,
        LeftOperand::QueryShape,
        LeftOperand::MinGroupSize,
        LeftOperand::AllowedColumns,
        LeftOperand::OrgRole,
        LeftOperand::Terms,
    ];
    /// The compact JSON-LD term.
    pub fn term(self) -> &'static str {
        match self {
            LeftOperand::DateTime => "dateTime",
            LeftOperand::ElapsedTime => "elapsedTime",
            LeftOperand::Count => "count",
            LeftOperand::Purpose => "purpose",
            LeftOperand::Spatial => "spatial",
            LeftOperand::Recipient => "recipient",
            LeftOperand::QueryShape => "queryShape",
            LeftOperand::MinGroupSize => "minGroupSize",
            LeftOperand::AllowedColumns => "allowedColumns",
            LeftOperand::OrgRole => "orgRole",
            LeftOperand::Terms => "terms",
        }
    }
    /// The absolute IRI.
    pub fn iri(self) -> String {
        let ns = if self.is_profile_term() {
            ALLMENDE
        } else {
            ODRL
        };
        format!("{ns}{}", self.term())
    }
    /// Whether the term belongs to the profile namespace rather than ODRL's.
    pub fn is_profile_term(self) -> bool {
        matches!(
            self,
            LeftOperand::QueryShape
                | LeftOperand::MinGroupSize
                | LeftOperand::AllowedColumns
                | LeftOperand::OrgRole
                | LeftOperand::Terms
        )
    }
    /// The operand whose compact term is `term`.
    pub fn from_term(term: &str) -> Option<LeftOperand> {
        LeftOperand::ALL.iter().copied().find(|l| l.term() == term)
    }
    /// The operand whose absolute IRI is `iri`.
    pub fn from_iri(iri: &str) -> Option<LeftOperand> {
        LeftOperand::ALL.iter().copied().find(|l| l.iri() == iri)
    }
    /// Whether the request value is a set (D4) rather than a scalar.
    pub fn is_set_valued(self) -> bool {
        matches!(self, LeftOperand::AllowedColumns | LeftOperand::OrgRole)
    }
}

impl std::fmt::Display for LeftOperand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.term())
    }
}

vocab!(
    /// Constraint operators.
    Operator, ODRL, {
        /// `eq`.
        Eq => "eq",
        /// `neq` (D17: never `odrl:neg`).
        Neq => "neq",
        /// `lt`.
        Lt => "lt",
        /// `lteq`.
        Lteq => "lteq",
        /// `gt`.
        Gt => "gt",
        /// `gteq`.
        Gteq => "gteq",
        /// `isAnyOf`: L ∩ R ≠ ∅.
        IsAnyOf => "isAnyOf",
        /// `isNoneOf`: L ∩ R = ∅.
        IsNoneOf => "isNoneOf",
        /// `isAllOf`: R ⊆ L.
        IsAllOf => "isAllOf",
        /// `isPartOf`: L ⊆ R.
        IsPartOf => "isPartOf",
    }
);

impl Operator {
    /// Whether the operator compares sets (its right operand is a list).
    pub fn is_set_operator(self) -> bool {
        matches!(
            self,
            Operator::IsAnyOf | Operator::IsNoneOf | Operator::IsAllOf | Operator::IsPartOf
        )
    }
    /// Whether the operator is an order comparison.
    pub fn is_ordering(self) -> bool {
        matches!(
            self,
            Operator::Lt | Operator::Lteq | Operator::Gt | Operator::Gteq
        )
    }
}

vocab!(
    /// Operators of logical constraints (`andSequence` is outside the profile).
    LogicalOperator, ODRL, {
        /// `and`: every operand holds.
        And => "and",
        /// `or`: at least one operand holds.
        Or => "or",
        /// `xone`: exactly one operand holds.
        Xone => "xone",
    }
);
