//! One integration-test binary: the real `tandem` on temp trees, whole trees compared.

mod cut_proxy;
mod delay_proxy;
mod sides;
mod sshd;
mod util;

mod casefold;
mod cli;
mod continuous;
mod engine;
mod faults;
mod fidelity;
mod foldfs;
mod hosts;
mod layout;
mod local;
mod man;
mod metadata;
mod protocol;
mod rsh;
mod safety;
mod scale;
mod ssh;
mod ssh_certs;
mod ssh_config;
mod transports;
mod unattended;
mod verify;
