//! The seed's motor and follower, written with `device!` and `ebpf!`
//! (`ferrocat_plugin_api::devices::motor`), against the same logic written with plain
//! builder calls: the fragments are identical, with and without the optional
//! terminal variables, and declare what the control law needs.

use ferrocat_plugin_api::devices::motor::{Follower, Motor, SWITCH_OFF};
use ferrocat_plugin_api::ebpf::builder::{Builder, Var};
use ferrocat_plugin_api::ebpf::disasm::listing;
use ferrocat_plugin_api::fragment::{Fragment, ScalarType::*, VarKind};

/// `present` for a motor with every optional terminal variable, or none.
fn options(all: bool) -> impl Fn(&str) -> bool {
    move |_| all
}

fn dsl_motor(all: bool) -> Fragment {
    let b = Builder::new("motor");
    let m = Motor::declare(&b, &options(all));
    m.program(&b, |s| m.calculate_speed(s));
    b.finish().expect("the DSL motor builds")
}

/// The motor's variables, declared in the order `device!` declares them.
struct HandMotor<'b> {
    v: Vec<Var<'b>>,
    opt: Vec<Option<Var<'b>>>,
}

fn hand_declare(b: &Builder, all: bool) -> HandMotor<'_> {
    hand_declare_as(b, None, all)
}

/// The motor's variables as this device's own (`leader` = `None`) or as another device
/// linked as `leader` sees them: terminal links through the device link, device
/// variables foreign.
fn hand_declare_as<'b>(b: &'b Builder, leader: Option<&str>, all: bool) -> HandMotor<'b> {
    let link = |l: &str| leader.map_or(l.to_string(), |d| format!("{d}.{l}"));
    let (stepper, switches) = (link("stepper"), link("switches"));
    let t = |n, ty| b.terminal(&stepper, n, ty);
    let velocity = t("velocity", I16);
    let encoder = t("encoder", I32);
    let enabled = t("enabled", Bool);
    let control_word = t("control_word", U16);
    let reduced_current = all.then(|| t("reduced_current", Bool));
    let encoder_error = all.then(|| t("encoder_error", Bool));
    let low = all.then(|| b.terminal(&switches, "low_switch", Bool));
    let high = all.then(|| b.terminal(&switches, "high_switch", Bool));
    let mut v = vec![velocity, encoder, enabled, control_word];
    for (n, ty) in [
        ("set_control_word", U16),
        ("deadband_exceeded", I8),
        ("max_velocity", I64),
        ("last_velocity", I64),
        ("max_acceleration", U64),
        ("deadband", I64),
        ("target", I64),
        ("proportional", I64),
        ("lasttime", U64),
    ] {
        v.push(match leader {
            None => b.device(n, ty),
            Some(d) => b.foreign(d, n, ty),
        });
    }
    HandMotor {
        v,
        opt: vec![reduced_current, encoder_error, low, high],
    }
}

/// The seed's program with builder calls only.
fn hand_program<'b>(b: &'b Builder, m: &HandMotor<'b>, calculate_speed: impl FnOnce(Var<'b>)) {
    let [velocity, encoder, enabled, control_word] = [m.v[0], m.v[1], m.v[2], m.v[3]];
    let [
        set_cw,
        db_exceeded,
        max_v,
        last_v,
        max_acc,
        deadband,
        target,
        _p,
        lasttime,
    ] = [
        m.v[4], m.v[5], m.v[6], m.v[7], m.v[8], m.v[9], m.v[10], m.v[11], m.v[12],
    ];
    let diff = b.temp((max_acc * (b.cycle_time() - lasttime)) >> 32);
    b.if_(diff.gt(0), |_| lasttime.assign(b.cycle_time()));
    control_word.assign(set_cw);
    if let Some(rc) = m.opt[0] {
        b.if_((target - encoder).abs().gt(deadband), |_| {
            rc.assign(false);
            db_exceeded.assign(1);
        })
        .else_(|_| rc.assign(true));
    }
    let speed = b.temp(target - encoder);
    calculate_speed(speed);
    b.if_(speed.gt(max_v), |_| speed.assign(max_v));
    b.if_((speed + max_v).lt(0), |_| speed.assign(-max_v));
    if let Some(low) = m.opt[2] {
        b.if_(low.is_true().and(speed.lt(0)), |_| speed.assign(0));
    }
    if let Some(high) = m.opt[3] {
        b.if_(high.is_true().and(speed.gt(0)), |_| speed.assign(0));
    }
    if let Some(error) = m.opt[1] {
        b.if_(error.is_true(), |_| speed.assign(0));
    }
    velocity.assign(speed);
    b.if_(speed.gt(last_v + diff), |_| velocity.assign(last_v + diff))
        .else_if(last_v.gt(speed + diff), |_| velocity.assign(last_v - diff));
    b.if_(enabled.is_true(), |_| last_v.assign(velocity))
        .else_(|_| last_v.assign(0));
}

fn hand_motor(all: bool) -> Fragment {
    let b = Builder::new("motor");
    let m = hand_declare(&b, all);
    let p = m.v[11];
    hand_program(&b, &m, |s| s.assign((p * s) >> 16));
    b.finish().expect("the hand-written motor builds")
}

#[test]
fn motor_dsl_equals_hand_written_builder_calls() {
    for all in [true, false] {
        let d = dsl_motor(all);
        let h = hand_motor(all);
        assert_eq!(
            d,
            h,
            "with options = {all}\nDSL:\n{}\nhand:\n{}",
            listing(&d.insns),
            listing(&h.insns)
        );
        assert!(d.uses_cycle_time, "the motor reads the cycle time");
        assert!(!d.sets_verdict);
    }
}

#[test]
fn optional_terminal_variables_are_declared_only_when_present() {
    let names = |f: &Fragment| -> Vec<String> { f.vars.iter().map(|v| v.name.clone()).collect() };
    let all = dsl_motor(true);
    let none = dsl_motor(false);
    for n in [
        "reduced_current",
        "encoder_error",
        "low_switch",
        "high_switch",
    ] {
        assert!(names(&all).iter().any(|x| x == n), "{n} declared");
        assert!(!names(&none).iter().any(|x| x == n), "{n} not declared");
    }
    assert!(none.insns.len() < all.insns.len());
    let target = all
        .vars
        .iter()
        .find(|v| v.name == "target")
        .expect("target is declared");
    assert_eq!(target.kind, VarKind::Device);
    assert_eq!(target.ty.scalar, I64);
}

fn dsl_follower() -> Fragment {
    let b = Builder::new("follower");
    let f = Follower {
        follow_factor: 0.5,
        motors_factor: 2.0,
        follow_lag: 1000,
        ..Follower::declare(&b, &options(true))
    };
    f.program(&b);
    b.finish().expect("the DSL follower builds")
}

#[test]
fn follower_dsl_equals_hand_written_builder_calls() {
    let d = dsl_follower();
    let b = Builder::new("follower");
    let m = hand_declare(&b, true);
    let leader = hand_declare_as(&b, Some("leader"), true);
    let follow_offset = b.device("follow_offset", I64);
    let do_follow = b.device("do_follow", U8);
    let [leader_velocity, leader_encoder, leader_enabled] = [0, 1, 2].map(|i| leader.v[i]);
    let leader_cw = leader.v[4];
    let (target, encoder, set_cw) = (m.v[10], m.v[1], m.v[4]);
    let half = (0.5f64 * 65536.0) as i64;
    b.if_(do_follow.ne(0), |b| {
        target.assign(((leader_encoder * half) >> 16) + follow_offset);
        b.if_((target - encoder).abs().gt(1000), |_| {
            set_cw.assign(SWITCH_OFF);
            do_follow.assign(0);
            leader_cw.assign(SWITCH_OFF);
        });
    });
    let p = m.v[11];
    hand_program(&b, &m, |s| {
        s.assign((p * s) >> 16);
        let factor = (2.0f64 * 0.5 * 65536.0) as i64;
        b.if_(do_follow.ne(0).and(leader_enabled), |_| {
            s.add_assign((factor * leader_velocity) >> 16);
        });
    });
    let h = b.finish().expect("the hand-written follower builds");
    assert_eq!(
        d,
        h,
        "DSL:\n{}\nhand:\n{}",
        listing(&d.insns),
        listing(&h.insns)
    );
    let foreign = d
        .vars
        .iter()
        .find(|v| matches!(&v.kind, VarKind::Foreign { link } if link == "leader"))
        .expect("the leader's control word is a foreign variable");
    assert_eq!(foreign.name, "set_control_word");
    let through = |name: &str, link: &str| {
        d.vars.iter().any(|v| {
            v.name == name && matches!(&v.kind, VarKind::Terminal { link: l, .. } if l == link)
        })
    };
    assert!(
        through("encoder", "leader.stepper"),
        "the leader's encoder, via the leader"
    );
    assert!(through("encoder", "stepper"), "the follower's own encoder");
    assert!(through("low_switch", "leader.switches"));
}

#[test]
fn a_linked_devices_options_are_asked_for_with_their_path() {
    let b = Builder::new("follower");
    let asked = std::cell::RefCell::new(Vec::new());
    let f = Follower::declare(&b, &|n| {
        asked.borrow_mut().push(n.to_string());
        !n.starts_with("leader.")
    });
    f.program(&b);
    let d = b.finish().expect("the follower builds");
    let asked = asked.into_inner();
    assert!(asked.contains(&"low_switch".to_string()), "{asked:?}");
    assert!(
        asked.contains(&"leader.low_switch".to_string()),
        "{asked:?}"
    );
    let links: Vec<&str> = d
        .vars
        .iter()
        .filter(|v| v.name == "low_switch")
        .filter_map(|v| match &v.kind {
            VarKind::Terminal { link, .. } => Some(link.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        links,
        ["switches"],
        "only the follower's own switch is declared"
    );
}
