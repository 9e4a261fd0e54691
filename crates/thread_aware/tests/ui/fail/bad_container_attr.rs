use thread_aware::ThreadAware;

#[derive(ThreadAware)]
#[thread_aware(bound = "T ThreadAware")]
struct BadPredicate<T>(T);

#[derive(ThreadAware)]
#[thread_aware(bound = T)]
struct NotAString<T>(T);

#[derive(ThreadAware)]
#[thread_aware(crate = "thread_aware")]
struct CrateString(u8);

#[derive(ThreadAware)]
#[thread_aware(skip)]
struct FieldAttrOnContainer(u8);

#[derive(ThreadAware)]
struct ContainerAttrOnField(#[thread_aware(bound = "")] u8);

fn main() {}
