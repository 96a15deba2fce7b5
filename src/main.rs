/// Large blocks backed by transparent huge pages (see `huge_pages`).
#[global_allocator]
static ALLOCATOR: hft::huge_pages::HugePageAlloc = hft::huge_pages::HugePageAlloc;

fn main() -> std::process::ExitCode {
    hft::cli::main()
}
