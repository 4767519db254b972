//! The seed's `MotorDevice` and `FollowerDevice` (the talk's "The Code for parallel
//! motion") against ferrocat's `devices::motor`: the Rust is no longer than the Python.
//!
//! A line of code is a line that is not blank and not a comment (`//`, `///`); the
//! seed's Python is read from the talk as printed (its code fences dropped), ferrocat's
//! from `plugin-api/src/devices/motor.rs`, from its first `device!` to its end, every
//! closing-brace line counted.

use std::path::PathBuf;

const RUST: &str = include_str!("../src/devices/motor.rs");

/// The talk, from the `shared/seed` folder beside the workspace.
fn seed() -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/seed");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the seed folder {} cannot be read: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains("class MotorDevice(Device):") {
            return text;
        }
    }
    panic!("no file in {} holds the seed's MotorDevice", dir.display());
}

fn is_code(line: &str, comment: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with(comment)
}

/// The Python lines of code of `class name` up to the next class or the code block's
/// end (a fence followed by prose), fences dropped.
fn python_class(seed: &str, name: &str) -> Vec<String> {
    let lines: Vec<&str> = seed.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with(&format!("class {name}(")))
        .unwrap_or_else(|| panic!("the seed has no class {name}"));
    let mut out = vec![lines[start].to_string()];
    let mut in_code = true;
    for l in &lines[start + 1..] {
        if l.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            if l.starts_with("class ") {
                break;
            }
            if is_code(l, "#") {
                out.push(l.to_string());
            }
        } else if !l.trim().is_empty() {
            break; // prose after a closed fence: the listing is over
        }
    }
    out
}

/// Rust lines of code of the motor (its declaration and `impl`) and of the follower.
fn rust_devices() -> (Vec<&'static str>, Vec<&'static str>) {
    let lines: Vec<&str> = RUST.lines().collect();
    let find = |p: &dyn Fn(&str) -> bool, what: &str| {
        lines
            .iter()
            .position(|l| p(l))
            .unwrap_or_else(|| panic!("motor.rs has no {what}"))
    };
    let start = find(&|l| l.starts_with("device! {"), "device!");
    let follower = find(
        &|l| l.trim_start().starts_with("pub struct Follower"),
        "Follower",
    );
    let end = find(&|l| l == "}", "end of device!");
    let motor_impl = find(&|l| l.starts_with("impl<'b> Motor<'b>"), "impl Motor");
    let follower_impl = find(&|l| l.starts_with("impl<'b> Follower<'b>"), "impl Follower");
    assert!(start < follower && follower < end && end < motor_impl && motor_impl < follower_impl);
    let code = |r: std::ops::Range<usize>| -> Vec<&str> {
        lines[r]
            .iter()
            .copied()
            .filter(|l| is_code(l, "//"))
            .collect()
    };
    let mut motor = code(start..follower);
    motor.extend(code(motor_impl..follower_impl));
    let mut follower_lines = code(follower..end + 1);
    follower_lines.extend(code(follower_impl..lines.len()));
    (motor, follower_lines)
}

#[test]
fn the_seed_devices_in_rust_are_no_longer_than_in_python() {
    let seed = seed();
    let py_motor = python_class(&seed, "MotorDevice");
    let py_follower = python_class(&seed, "FollowerDevice");
    // The listing as the talk prints it: 61 and 19 lines.
    assert_eq!(
        (py_motor.len(), py_follower.len()),
        (61, 19),
        "{py_motor:#?}"
    );
    assert!(
        py_motor
            .iter()
            .any(|l| l.contains("self.last_velocity = 0"))
    );
    assert!(
        py_follower
            .last()
            .is_some_and(|l| l.contains("super().program()"))
    );

    let (motor, follower) = rust_devices();
    println!(
        "lines of code: motor {} (Python {}), follower {} (Python {}), together {} (Python {})",
        motor.len(),
        py_motor.len(),
        follower.len(),
        py_follower.len(),
        motor.len() + follower.len(),
        py_motor.len() + py_follower.len()
    );
    assert!(
        motor.len() + follower.len() <= py_motor.len() + py_follower.len(),
        "the parallel-motion code is {} lines of Rust against {} of Python",
        motor.len() + follower.len(),
        py_motor.len() + py_follower.len()
    );
    assert!(
        motor.len() <= py_motor.len(),
        "the motor is {} lines of Rust against {} of Python",
        motor.len(),
        py_motor.len()
    );
}
