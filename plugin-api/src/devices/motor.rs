//! The seed's `MotorDevice` and `FollowerDevice` (ebpfcat's parallel-motion example)
//! written with `device!` and `ebpf!`: a stepper driven towards a target with
//! proportional control, velocity and acceleration limits, limit switches, and a
//! follower locked to a leader motor.

use crate::ebpf::builder::{Builder, Var};
use crate::{device, ebpf};

/// Control word with every bit, the enable bit included, cleared: the stepper terminal
/// switches its power stage off.
pub const SWITCH_OFF: i64 = 0;

device! {
    /// The seed's `MotorDevice`: terminal variables of the stepper (and its optional
    /// extras), device variables shared with the host.
    pub struct Motor {
        velocity: terminal("stepper", I16),
        encoder: terminal("stepper", I32),
        enabled: terminal("stepper", Bool),
        control_word: terminal("stepper", U16),
        reduced_current: Option<terminal("stepper", Bool)>,
        encoder_error: Option<terminal("stepper", Bool)>,
        low_switch: Option<terminal("switches", Bool)>,
        high_switch: Option<terminal("switches", Bool)>,
        set_control_word: device(U16),
        deadband_exceeded: device(I8),
        max_velocity: device(I64),
        last_velocity: device(I64),
        max_acceleration: device(U64),
        deadband: device(I64),
        target: device(I64),
        proportional: device(I64),
        lasttime: device(U64),
    }

    /// The seed's `FollowerDevice`: a motor that follows a leader motor's position.
    pub struct Follower: Motor {
        leader: linked(Motor),
        follow_offset: device(I64),
        do_follow: device(U8),
        follow_factor: f64,
        motors_factor: f64,
        follow_lag: i64,
    }
}

impl<'b> Motor<'b> {
    /// The seed's `calculate_speed`: proportional control, 16 fractional bits.
    pub fn calculate_speed(&self, speed: Var<'b>) {
        ebpf! { speed = (self.proportional * speed) >> 16; }
    }

    /// The seed's `program`; `calculate_speed` is this motor's (`|s| m.calculate_speed(s)`)
    /// or a follower's override.
    pub fn program(&self, b: &'b Builder, calculate_speed: impl FnOnce(Var<'b>)) {
        ebpf! { b =>
            let velocity_diff = (self.max_acceleration * (b.cycle_time() - self.lasttime)) >> 32;
            if velocity_diff > 0 { self.lasttime = b.cycle_time(); }
            self.control_word = self.set_control_word;
            if let Some(reduced_current) = self.reduced_current {
                if (self.target - self.encoder).abs() > self.deadband {
                    reduced_current = false;
                    self.deadband_exceeded = 1;
                } else { reduced_current = true; }
            }
            let speed = self.target - self.encoder;
            calculate_speed(speed);
            if speed > self.max_velocity { speed = self.max_velocity; }
            if speed + self.max_velocity < 0 { speed = -self.max_velocity; }
            if let Some(low) = self.low_switch { if low && speed < 0 { speed = 0; } }
            if let Some(high) = self.high_switch { if high && speed > 0 { speed = 0; } }
            if let Some(error) = self.encoder_error { if error { speed = 0; } }
            self.velocity = speed;
            if speed > self.last_velocity + velocity_diff {
                self.velocity = self.last_velocity + velocity_diff;
            } else if self.last_velocity > speed + velocity_diff {
                self.velocity = self.last_velocity - velocity_diff;
            }
            if self.enabled { self.last_velocity = self.velocity; } else { self.last_velocity = 0; }
        }
    }
}

impl<'b> Follower<'b> {
    /// The seed's override: the motor's speed plus the leader's, scaled.
    pub fn calculate_speed(&self, speed: Var<'b>) {
        self.base.calculate_speed(speed);
        ebpf! { if self.do_follow != 0 && self.leader.enabled {
            speed += self.leader.velocity.scale(self.motors_factor * self.follow_factor);
        } }
    }

    /// The seed's `program`: track the leader, switch both off on too large a lag, then
    /// run the motor's law with the follower's `calculate_speed`.
    pub fn program(&self, b: &'b Builder) {
        ebpf! { if self.do_follow != 0 {
            self.target = self.leader.encoder.scale(self.follow_factor) + self.follow_offset;
            if (self.target - self.encoder).abs() > self.follow_lag {
                self.set_control_word = SWITCH_OFF;
                self.do_follow = 0;
                self.leader.set_control_word = SWITCH_OFF;
            }
        } }
        self.base.program(b, |speed| self.calculate_speed(speed));
    }
}
