//! The reload plan: what a reload will do to each connector, computed as data before anything
//! is built or swapped (Vector's `ConfigDiff` is the model). A pure function of what serves
//! now, the new config, each plugin file's sha256 and the rollback pins, so every rule is a unit
//! test with no wasm compiled; [`super::Reloader`] only carries plans out.

use crate::config::ConnectorSettings;
use std::collections::{BTreeMap, BTreeSet};

/// What serves now for one connector: the settings its current version was built from and its
/// plugin's sha256.
#[derive(Debug, Clone, PartialEq)]
pub struct Serving {
    pub settings: ConnectorSettings,
    pub sha256: String,
}

/// A connector rolled back on purpose: the config settings and plugin sha256 that were on disk
/// then. Reloads leave it alone until one of those changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Pin {
    pub settings: Option<ConnectorSettings>,
    pub sha256: String,
}

/// Everything a plan is computed from.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The connectors serving now.
    pub serving: &'a BTreeMap<String, Serving>,
    /// `[connectors.*]` of the new config.
    pub config: &'a BTreeMap<String, ConnectorSettings>,
    /// The sha256 of each new-config connector's plugin file, or why it could not be read.
    pub on_disk: &'a BTreeMap<String, Result<String, String>>,
    pub pins: &'a BTreeMap<String, Pin>,
    /// The sinks the running host delivers to.
    pub sinks: &'a BTreeSet<String>,
    /// Only this connector (`tsunagi reload NAME`), or every connector.
    pub only: Option<&'a str>,
    /// Instance slots the engine was sized with at start (it cannot grow while running).
    pub instance_slots: u32,
}

/// What a reload does to one connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// New in the config: build, validate, start.
    Add,
    /// Gone from the config: stop claiming and drain; its targets stay stored.
    Remove,
    /// The plugin file or its settings changed: build, validate, swap; and restart the pipeline
    /// when the schedule, retry, concurrency, role or sinks changed.
    Swap { restart_pipeline: bool },
    /// Settings and plugin file are what serves.
    Unchanged,
    /// Rolled back on purpose, and the files are still those it was rolled back from.
    Pinned,
    /// Not carried out; the current version (if any) keeps serving.
    Refuse(Refusal),
}

impl Step {
    /// Whether a rollback pin survives this step: only while the connector is left alone.
    pub fn keeps_pin(&self) -> bool {
        matches!(self, Step::Unchanged | Step::Pinned)
    }
}

/// Why the plan refuses a connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Asked for by name, but neither in the config nor running.
    UnknownConnector,
    /// Names a sink the running host does not deliver to.
    NewSink(String),
    /// Its plugin file cannot be read.
    PluginUnreadable(String),
    /// Carrying it out would need more instance slots than the engine has.
    InstanceSlots { needed: u64, capacity: u32 },
}

/// One connector's step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep {
    pub connector: String,
    pub step: Step,
}

/// A reload's steps, one per connector, in name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadPlan {
    pub steps: Vec<PlannedStep>,
}

impl ReloadPlan {
    pub fn new(input: PlanInput<'_>) -> Self {
        let names: BTreeSet<&str> = match input.only {
            Some(name) => BTreeSet::from([name]),
            None => input
                .serving
                .keys()
                .chain(input.config.keys())
                .map(String::as_str)
                .collect(),
        };
        let mut steps: Vec<PlannedStep> = names
            .into_iter()
            .map(|name| PlannedStep {
                connector: name.to_string(),
                step: step_for(&input, name),
            })
            .collect();
        let needed = slots_needed(&input, &steps);
        if needed > u64::from(input.instance_slots) {
            // Refuse what would grow the demand; what keeps its size goes on serving.
            for planned in &mut steps {
                let name = planned.connector.as_str();
                let grows = match planned.step {
                    Step::Add => true,
                    Step::Swap { .. } => {
                        let now = input
                            .serving
                            .get(name)
                            .map_or(0, |s| s.settings.concurrency);
                        input.config.get(name).is_some_and(|c| c.concurrency > now)
                    }
                    _ => false,
                };
                if grows {
                    planned.step = Step::Refuse(Refusal::InstanceSlots {
                        needed,
                        capacity: input.instance_slots,
                    });
                }
            }
        }
        Self { steps }
    }

    /// The step for `connector`, if the plan has one.
    pub fn step(&self, connector: &str) -> Option<&Step> {
        self.steps
            .iter()
            .find(|planned| planned.connector == connector)
            .map(|planned| &planned.step)
    }
}

fn step_for(input: &PlanInput<'_>, name: &str) -> Step {
    let serving = input.serving.get(name);
    let Some(settings) = input.config.get(name) else {
        return match serving {
            Some(_) => Step::Remove,
            None => Step::Refuse(Refusal::UnknownConnector),
        };
    };
    if let Some(sink) = settings
        .sinks
        .iter()
        .find(|sink| !input.sinks.contains(*sink))
    {
        return Step::Refuse(Refusal::NewSink(sink.clone()));
    }
    let Some(serving) = serving else {
        return Step::Add;
    };
    let on_disk = match input.on_disk.get(name) {
        Some(Ok(sha256)) => sha256,
        Some(Err(reason)) => return Step::Refuse(Refusal::PluginUnreadable(reason.clone())),
        None => {
            return Step::Refuse(Refusal::PluginUnreadable(
                "its sha256 was not computed".to_string(),
            ));
        }
    };
    if same_version(&serving.settings, settings) && serving.sha256 == *on_disk {
        return Step::Unchanged;
    }
    if let Some(pin) = input.pins.get(name)
        && pin
            .settings
            .as_ref()
            .is_some_and(|pinned| same_version(pinned, settings))
        && pin.sha256 == *on_disk
    {
        return Step::Pinned;
    }
    Step::Swap {
        restart_pipeline: !same_pipeline(&serving.settings, settings),
    }
}

/// Instance slots a connector of `concurrency` may hold: during a hot swap, calls still running
/// on the old version and calls on the new one each hold an instance.
pub fn slots_for(concurrency: usize) -> u64 {
    (concurrency as u64).saturating_mul(2)
}

/// Slots the connectors would need once the plan's steps are carried out: every connector that
/// will run (added, swapped, unchanged, pinned, refused but still serving), plus those removed,
/// whose calls drain on their instances.
fn slots_needed(input: &PlanInput<'_>, steps: &[PlannedStep]) -> u64 {
    let planned: BTreeSet<&str> = steps.iter().map(|p| p.connector.as_str()).collect();
    let untouched = input
        .serving
        .iter()
        .filter(|(name, _)| !planned.contains(name.as_str()))
        .map(|(_, serving)| slots_for(serving.settings.concurrency));
    let touched = steps.iter().map(|planned| {
        let name = planned.connector.as_str();
        let serving = input.serving.get(name).map(|s| s.settings.concurrency);
        let wanted = input.config.get(name).map(|c| c.concurrency);
        match (&planned.step, serving, wanted) {
            (Step::Add | Step::Swap { .. }, _, Some(wanted)) => {
                slots_for(wanted.max(serving.unwrap_or(0)))
            }
            (_, Some(serving), _) => slots_for(serving),
            _ => 0,
        }
    });
    untouched.chain(touched).fold(0, u64::saturating_add)
}

/// Whether a version built with `a` is the one `b` asks for: every setting but retention's
/// (`keep_items`, `keep_items_count`), which the retention runner takes from each reload
/// without a new version.
pub fn same_version(a: &ConnectorSettings, b: &ConnectorSettings) -> bool {
    let without_retention = |settings: &ConnectorSettings| ConnectorSettings {
        keep_items: None,
        keep_items_count: None,
        ..settings.clone()
    };
    without_retention(a) == without_retention(b)
}

/// Whether a running pipeline started with `a` can go on with `b`.
pub fn same_pipeline(a: &ConnectorSettings, b: &ConnectorSettings) -> bool {
    a.role == b.role
        && a.concurrency == b.concurrency
        && a.schedule == b.schedule
        && a.retry == b.retry
        && a.sinks == b.sinks
        && a.jobs == b.jobs
        // xread: the pipeline holds the compiled filters.
        && a.filters == b.filters
        && a.pause_on_problem == b.pause_on_problem
        && a.pause_for == b.pause_for
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;
    use std::path::PathBuf;
    use std::time::Duration;

    fn settings() -> ConnectorSettings {
        let text = "plugin = \"rss.wasm\"\nrole = \"poller\"\n";
        toml::from_str(text).expect("minimal connector settings")
    }

    struct World {
        serving: BTreeMap<String, Serving>,
        config: BTreeMap<String, ConnectorSettings>,
        on_disk: BTreeMap<String, Result<String, String>>,
        pins: BTreeMap<String, Pin>,
        sinks: BTreeSet<String>,
    }

    impl World {
        /// `rss` serving `sha-a` with default settings, and the same on disk.
        fn serving_rss() -> Self {
            let mut world = World {
                serving: BTreeMap::new(),
                config: BTreeMap::new(),
                on_disk: BTreeMap::new(),
                pins: BTreeMap::new(),
                sinks: BTreeSet::from(["file".to_string()]),
            };
            world.serving.insert(
                "rss".into(),
                Serving {
                    settings: settings(),
                    sha256: "sha-a".into(),
                },
            );
            world.config.insert("rss".into(), settings());
            world.on_disk.insert("rss".into(), Ok("sha-a".into()));
            world
        }

        fn plan(&self, only: Option<&str>) -> ReloadPlan {
            ReloadPlan::new(PlanInput {
                serving: &self.serving,
                config: &self.config,
                on_disk: &self.on_disk,
                pins: &self.pins,
                sinks: &self.sinks,
                only,
                instance_slots: 1024,
            })
        }

        fn step(&self, name: &str) -> Step {
            self.plan(None).step(name).cloned().expect("a step")
        }

        fn edit(&mut self, name: &str, change: impl FnOnce(&mut ConnectorSettings)) {
            change(self.config.get_mut(name).expect("in the config"));
        }
    }

    #[test]
    fn the_same_settings_and_file_are_unchanged() {
        assert_eq!(World::serving_rss().step("rss"), Step::Unchanged);
    }

    #[test]
    fn a_retention_change_alone_needs_no_new_version() {
        let mut world = World::serving_rss();
        world.edit("rss", |s| {
            s.keep_items = Some(Duration::from_secs(90 * 24 * 3600));
            s.keep_items_count = Some(1000);
        });
        assert_eq!(world.step("rss"), Step::Unchanged);
        world.edit("rss", |s| s.calls_per_instance = 7);
        assert_eq!(
            world.step("rss"),
            Step::Swap {
                restart_pipeline: false
            },
            "with another change it still swaps"
        );
    }

    #[test]
    fn a_new_plugin_file_swaps_without_a_restart() {
        let mut world = World::serving_rss();
        world.on_disk.insert("rss".into(), Ok("sha-b".into()));
        assert_eq!(
            world.step("rss"),
            Step::Swap {
                restart_pipeline: false
            }
        );
    }

    #[test]
    fn runtime_settings_swap_without_a_restart() {
        let mut world = World::serving_rss();
        world.edit("rss", |s| s.limits.call_timeout = Duration::from_secs(3));
        assert_eq!(
            world.step("rss"),
            Step::Swap {
                restart_pipeline: false
            }
        );
        let mut world = World::serving_rss();
        world.edit("rss", |s| {
            s.config
                .insert("user_agent".into(), toml::Value::String("x".into()));
        });
        assert_eq!(
            world.step("rss"),
            Step::Swap {
                restart_pipeline: false
            }
        );
    }

    #[test]
    fn pipeline_settings_swap_with_a_restart() {
        let edits: [fn(&mut ConnectorSettings); 4] = [
            |s| s.concurrency = 5,
            |s| s.schedule.min_interval = Duration::from_secs(1),
            |s| s.retry.max_failures = 2,
            |s| s.sinks = vec!["file".into()],
        ];
        for (index, edit) in edits.iter().enumerate() {
            let mut world = World::serving_rss();
            world.edit("rss", edit);
            assert_eq!(
                world.step("rss"),
                Step::Swap {
                    restart_pipeline: true
                },
                "edit {index}"
            );
        }
    }

    #[test]
    fn a_connector_new_in_the_config_is_added() {
        let mut world = World::serving_rss();
        world.config.insert("atom".into(), settings());
        world.on_disk.insert("atom".into(), Ok("sha-c".into()));
        assert_eq!(world.step("atom"), Step::Add);
        assert_eq!(world.step("rss"), Step::Unchanged);
    }

    #[test]
    fn a_connector_gone_from_the_config_is_removed() {
        let mut world = World::serving_rss();
        world.config.remove("rss");
        world.on_disk.remove("rss");
        assert_eq!(world.step("rss"), Step::Remove);
    }

    #[test]
    fn an_unknown_name_is_refused() {
        let world = World::serving_rss();
        let plan = world.plan(Some("nope"));
        assert_eq!(
            plan.steps,
            vec![PlannedStep {
                connector: "nope".into(),
                step: Step::Refuse(Refusal::UnknownConnector)
            }]
        );
    }

    #[test]
    fn only_plans_the_named_connector() {
        let mut world = World::serving_rss();
        world.config.insert("atom".into(), settings());
        world.on_disk.insert("rss".into(), Ok("sha-b".into()));
        let plan = world.plan(Some("rss"));
        assert_eq!(plan.steps.len(), 1);
        assert_eq!(plan.step("atom"), None);
        assert_eq!(
            plan.step("rss"),
            Some(&Step::Swap {
                restart_pipeline: false
            })
        );
    }

    #[test]
    fn a_sink_the_host_does_not_run_is_refused() {
        let mut world = World::serving_rss();
        world.edit("rss", |s| s.sinks = vec!["webhook".into()]);
        assert_eq!(
            world.step("rss"),
            Step::Refuse(Refusal::NewSink("webhook".into()))
        );
        // Also for a connector that is new.
        let mut new_one = settings();
        new_one.sinks = vec!["webhook".into()];
        world.config.insert("atom".into(), new_one);
        assert_eq!(
            world.step("atom"),
            Step::Refuse(Refusal::NewSink("webhook".into()))
        );
    }

    #[test]
    fn an_unreadable_plugin_file_is_refused_with_the_reason() {
        let mut world = World::serving_rss();
        world
            .on_disk
            .insert("rss".into(), Err("No such file or directory".into()));
        assert_eq!(
            world.step("rss"),
            Step::Refuse(Refusal::PluginUnreadable(
                "No such file or directory".into()
            ))
        );
    }

    #[test]
    fn a_pin_holds_while_the_files_are_those_rolled_back_from() {
        let mut world = World::serving_rss();
        // Rolled back to sha-a while sha-b (and the same settings) stay on disk.
        world.on_disk.insert("rss".into(), Ok("sha-b".into()));
        world.pins.insert(
            "rss".into(),
            Pin {
                settings: Some(settings()),
                sha256: "sha-b".into(),
            },
        );
        assert_eq!(world.step("rss"), Step::Pinned);
        assert!(Step::Pinned.keeps_pin());
    }

    #[test]
    fn a_pin_gives_way_when_the_plugin_or_settings_change_again() {
        let pinned = |world: &mut World| {
            world.pins.insert(
                "rss".into(),
                Pin {
                    settings: Some(settings()),
                    sha256: "sha-b".into(),
                },
            );
        };
        let mut world = World::serving_rss();
        pinned(&mut world);
        world.on_disk.insert("rss".into(), Ok("sha-c".into()));
        let step = world.step("rss");
        assert_eq!(
            step,
            Step::Swap {
                restart_pipeline: false
            }
        );
        assert!(!step.keeps_pin());

        let mut world = World::serving_rss();
        pinned(&mut world);
        world.on_disk.insert("rss".into(), Ok("sha-b".into()));
        world.edit("rss", |s| s.concurrency = 7);
        assert_eq!(
            world.step("rss"),
            Step::Swap {
                restart_pipeline: true
            }
        );
    }

    #[test]
    fn every_connector_is_planned_once_in_name_order() {
        let mut world = World::serving_rss();
        world.config.insert("atom".into(), settings());
        world.serving.insert(
            "zeta".into(),
            Serving {
                settings: settings(),
                sha256: "sha-z".into(),
            },
        );
        let names: Vec<String> = world
            .plan(None)
            .steps
            .into_iter()
            .map(|s| s.connector)
            .collect();
        assert_eq!(names, ["atom", "rss", "zeta"]);
    }

    #[test]
    fn the_role_is_a_pipeline_setting() {
        let a = settings();
        let mut b = settings();
        b.role = Role::Handler;
        assert!(!same_pipeline(&a, &b));
        b = settings();
        b.plugin = PathBuf::from("other.wasm");
        assert!(same_pipeline(&a, &b), "the plugin path is not");
    }

    #[test]
    fn a_reload_that_would_outgrow_the_instance_slots_refuses_what_grows() {
        let mut world = World::serving_rss();
        for index in 0..10 {
            let mut added = settings();
            added.concurrency = 32;
            world.config.insert(format!("feed-{index}"), added);
            world
                .on_disk
                .insert(format!("feed-{index}"), Ok("sha-x".into()));
        }
        // 11 connectors of 32 need 704 slots: fits 1024.
        assert_eq!(world.step("feed-9"), Step::Add);
        world.edit("feed-0", |s| s.concurrency = 200);
        let refused = Step::Refuse(Refusal::InstanceSlots {
            needed: 64 * 10 + 400,
            capacity: 1024,
        });
        let plan = world.plan(None);
        assert_eq!(plan.step("feed-0"), Some(&refused));
        assert_eq!(plan.step("feed-9"), Some(&refused));
        assert_eq!(
            plan.step("rss"),
            Some(&Step::Unchanged),
            "what serves goes on"
        );
        // A swap that keeps its concurrency is not refused even then.
        world.on_disk.insert("rss".into(), Ok("sha-b".into()));
        assert_eq!(
            world.plan(None).step("rss"),
            Some(&Step::Swap {
                restart_pipeline: false
            })
        );
    }
}
