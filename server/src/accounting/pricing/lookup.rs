//! Finding a model's price, and its label on metrics, by the rules in the module documentation.

use super::{names, ModelPrice, Pricing};

impl Pricing {
    /// The price of a model (see the module documentation for the rules). An exact name costs
    /// one hash lookup; other names a few, with at most one small allocation.
    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
        if let Some(p) = self.models.get(model) {
            return Some(p);
        }
        let id = names::surface(model);
        self.find(id)
            .or_else(|| self.find(names::strip_latest(id)?))
    }

    fn find(&self, id: &str) -> Option<&ModelPrice> {
        if id.is_empty() {
            return None;
        }
        let at = |n: &str| {
            self.models
                .get(n)
                .or_else(|| self.index.get(n))
                .or_else(|| self.undated.get(n))
        };
        let c = names::canonical(id);
        self.models
            .get(id)
            .or_else(|| at(&c))
            // Another date of a model: its undated entry (or newest snapshot).
            .or_else(|| at(names::strip_date(&c)?.0))
    }

    /// The model's label on metrics: the table's own name for it (found as [`Pricing::price`]
    /// finds prices), else `other`. Labels come only from the table, so clients sending
    /// random model names cannot grow the series count (bounded by the table's names).
    pub fn metric_label(&self, model: &str) -> &str {
        if let Some((name, _)) = self.models.get_key_value(model) {
            return name;
        }
        let in_table = |n: &str| {
            self.models
                .get_key_value(n)
                .or_else(|| self.index.get_key_value(n))
                .or_else(|| self.undated.get_key_value(n))
                .map(|(k, _)| k.as_str())
        };
        let id = names::surface(model);
        let found = |id: &str| {
            if id.is_empty() {
                return None;
            }
            let c = names::canonical(id);
            in_table(id)
                .or_else(|| in_table(&c))
                .or_else(|| in_table(names::strip_date(&c)?.0))
        };
        found(id)
            .or_else(|| found(names::strip_latest(id)?))
            .unwrap_or("other")
    }

    /// The exact name only.
    pub fn exact(&self, model: &str) -> Option<&ModelPrice> {
        self.models.get(model)
    }
}
