use thread_aware::ThreadAware;

#[derive(ThreadAware)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
