//! Property test: any model written as YAML or KDL loads back to the same model.

use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use remote_agents_spec::*;

fn text() -> impl Strategy<Value = String> {
    // Printable text plus tabs and newlines: quoting and escaping must survive both writers.
    "[\\PC\t\n]{0,10}"
}

fn key() -> impl Strategy<Value = String> {
    // `-` is excluded: in KDL a block whose children are all `-` is a list.
    "[\\PC]{1,8}".prop_filter("not the KDL list marker", |k| k != "-")
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::Plan),
        Just(Mode::Edit),
        Just(Mode::Bypass),
        Just(Mode::Disabled)
    ]
}

fn allow_deny() -> impl Strategy<Value = AllowDeny> {
    (vec(text(), 0..3), vec(text(), 0..3)).prop_map(|(allow, deny)| AllowDeny { allow, deny })
}

fn policy() -> impl Strategy<Value = Policy> {
    (allow_deny(), allow_deny()).prop_map(|(paths, commands)| Policy { paths, commands })
}

fn metadata() -> impl Strategy<Value = Metadata> {
    (text(), btree_map(key(), text(), 0..3)).prop_map(|(name, labels)| Metadata { name, labels })
}

fn fleet() -> impl Strategy<Value = Document> {
    let host = (
        text(),
        vec(text(), 0..3),
        btree_map(key(), text(), 0..3),
        option::of(mode()),
        option::of(policy()),
    )
        .prop_map(|(name, tags, facts, mode, policy)| HostEntry {
            name,
            tags,
            facts,
            mode,
            policy,
        });
    let rule = (
        option::of(text()),
        text(),
        option::of(mode()),
        option::of(policy()),
    )
        .prop_map(|(name, target, mode, policy)| Rule {
            name,
            target,
            mode,
            policy,
        });
    let capability = prop::sample::select(Capability::ALL.to_vec());
    let operator = (
        text(),
        text(),
        option::of(text()),
        prop::collection::vec(capability, 0..3),
    )
        .prop_map(|(name, key, target, allow)| Operator {
            name,
            key,
            target,
            allow,
        });
    let test = (
        (option::of(text()), text(), option::of(text())),
        (
            vec(prop::sample::select(Capability::ALL.to_vec()), 0..3),
            vec(prop::sample::select(Capability::ALL.to_vec()), 0..2),
            option::of(mode()),
        ),
        (
            vec(text(), 0..2),
            vec(text(), 0..2),
            vec(text(), 0..2),
            vec(text(), 0..2),
        ),
    )
        .prop_map(
            |(
                (name, target, operator),
                (accept, deny, mode),
                (writable, unwritable, readable, unreadable),
            )| PolicyTest {
                name,
                target,
                operator,
                accept,
                deny,
                mode,
                writable,
                unwritable,
                readable,
                unreadable,
            },
        );
    let defaults = (option::of(mode()), option::of(policy()))
        .prop_map(|(mode, policy)| Defaults { mode, policy });
    (
        metadata(),
        option::of(defaults),
        vec(operator, 0..2),
        vec(host, 0..4),
        vec(rule, 0..3),
        vec(test, 0..2),
    )
        .prop_map(|(metadata, defaults, operators, hosts, rules, tests)| {
            Document::Fleet(FleetDocument {
                api_version: ApiVersion::V1,
                kind: Fleet::Fleet,
                metadata,
                spec: FleetSpec {
                    defaults,
                    operators,
                    hosts,
                    rules,
                    tests,
                },
            })
        })
}

fn schedule() -> impl Strategy<Value = Document> {
    let concurrency = prop_oneof![
        Just(Concurrency::Allow),
        Just(Concurrency::Forbid),
        Just(Concurrency::Replace)
    ];
    (
        metadata(),
        text(),
        text(),
        vec(text(), 0..3),
        option::of(text()),
        option::of(text()),
        option::of(concurrency),
    )
        .prop_map(
            |(metadata, target, cron, command, shell, timeout, concurrency)| {
                Document::Schedule(ScheduleDocument {
                    api_version: ApiVersion::V1,
                    kind: Schedule::Schedule,
                    metadata,
                    spec: ScheduleSpec {
                        target,
                        cron,
                        command,
                        shell,
                        timeout,
                        concurrency,
                    },
                })
            },
        )
}

fn job() -> impl Strategy<Value = Document> {
    let input = (
        vec(text(), 0..2),
        vec(text(), 0..2),
        option::of(text()),
        vec(text(), 0..2),
    )
        .prop_map(|(files, command, shell, items)| Input {
            files,
            command,
            shell,
            items,
        });
    let step = (vec(text(), 0..2), option::of(text()))
        .prop_map(|(command, shell)| Step { command, shell });
    let reducer = prop_oneof![
        Just(Reducer::Sum),
        Just(Reducer::Count),
        Just(Reducer::Concat)
    ];
    let reduce = (option::of(reducer), vec(text(), 0..2), option::of(text())).prop_map(
        |(builtin, command, shell)| Reduce {
            builtin,
            command,
            shell,
        },
    );
    let trigger = prop_oneof![
        Just(Trigger::Manual),
        Just(Trigger::OnApply),
        Just(Trigger::Cron)
    ];
    (
        metadata(),
        (text(), input, option::of(any::<u32>()), step, reduce),
        (
            option::of(any::<u32>()),
            option::of(trigger),
            option::of(text()),
        ),
    )
        .prop_map(
            |(metadata, (target, input, partitions, map, reduce), (retries, trigger, cron))| {
                Document::MapReduceJob(MapReduceJobDocument {
                    api_version: ApiVersion::V1,
                    kind: MapReduceJob::MapReduceJob,
                    metadata,
                    spec: MapReduceSpec {
                        target,
                        input,
                        partitions,
                        map,
                        reduce,
                        retries,
                        trigger,
                        cron,
                    },
                })
            },
        )
}

fn model() -> impl Strategy<Value = FleetModel> {
    vec(prop_oneof![fleet(), schedule(), job()], 0..4).prop_map(FleetModel::from_documents)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn yaml_round_trip_is_lossless(model in model()) {
        let yaml = to_yaml(&model);
        let (loaded, diagnostics) = load(&[("generated.yaml", yaml.as_str())]);
        let structural: Vec<_> = diagnostics.iter().filter(|d| matches!(d.code,
            Code::Syntax | Code::WrongType | Code::UnknownField | Code::DuplicateKey)).collect();
        prop_assert!(structural.is_empty(), "{:?}\n{}", structural, yaml);
        prop_assert_eq!(&loaded, &model, "{}", yaml);
    }

    #[test]
    fn kdl_round_trip_is_lossless(model in model()) {
        let kdl = to_kdl(&model);
        let (loaded, diagnostics) = load(&[("generated.kdl", kdl.as_str())]);
        let structural: Vec<_> = diagnostics.iter().filter(|d| matches!(d.code,
            Code::Syntax | Code::WrongType | Code::UnknownField | Code::DuplicateKey)).collect();
        prop_assert!(structural.is_empty(), "{:?}\n{}", structural, kdl);
        prop_assert_eq!(&loaded, &model, "{}", kdl);
    }
}
