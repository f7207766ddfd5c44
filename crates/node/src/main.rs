//! `cairn`: the Cairn node binary (see the `cairn_node` library for what it does).

fn main() -> std::process::ExitCode {
    cairn_node::cli::main()
}
