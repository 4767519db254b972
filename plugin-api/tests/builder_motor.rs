//! Code size of the seed's motor control law (ferrocat_plugin_api::devices::motor)
//! as the builder compiles it, guarded against regressions. For comparison: ebpfcat
//! needs 459 instructions for 8 motors in one program (DESIGN.md), about 57 per motor
//! including its per-motor clock call.

use ferrocat_plugin_api::devices::motor::Motor;
use ferrocat_plugin_api::ebpf::builder::Builder;
use ferrocat_plugin_api::ebpf::disasm::listing;
use ferrocat_plugin_api::fragment::Fragment;

fn motor(all: bool) -> Fragment {
    let b = Builder::new("motor");
    let m = Motor::declare(&b, &move |_: &str| all);
    m.program(&b, |s| m.calculate_speed(s));
    b.finish().expect("the motor builds")
}

#[test]
fn the_motor_control_law_is_compact() {
    let full = motor(true);
    let bare = motor(false);
    println!(
        "full motor: {} slots\n{}",
        full.insns.len(),
        listing(&full.insns)
    );
    println!("bare motor: {} slots", bare.insns.len());
    // With every optional terminal variable (reduced current, encoder error, limit
    // switches) and without.
    assert!(full.insns.len() <= 72, "{} slots", full.insns.len());
    assert!(bare.insns.len() <= 43, "{} slots", bare.insns.len());
    assert_eq!(full.frame_size, 0, "the motor's locals live in registers");
    assert!(full.uses_cycle_time);
}
