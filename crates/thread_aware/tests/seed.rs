//! The seed's two examples, verbatim (thread_aware 0.3.0's README), run as
//! tests.
#![allow(dead_code, unused_variables)]

mod manual {
    use thread_aware::{MemoryAffinity, ThreadAware, Unaware, create_manual_affinities};

    // Define a type that implements ThreadAware
    #[derive(Debug, Clone)]
    struct MyData {
        value: i32,
    }

    impl ThreadAware for MyData {
        fn relocated(mut self, source: MemoryAffinity, destination: MemoryAffinity) -> Self {
            self.value = self.value.relocated(source, destination);
            self
        }
    }

    fn do_transfer() {
        // Create two affinities
        let affinities = create_manual_affinities(&[2]);

        // Create an instance of MyData
        let data = MyData { value: 42 };

        // Transfer data from one affinity to another
        let transferred_data = data.relocated(affinities[0], affinities[1]);

        // Use Inert to create a type that does not transfer data
        struct MyInertData(i32);

        let inert_data = Unaware(MyInertData(100));
        let transferred_inert_data = inert_data.relocated(affinities[0], affinities[1]);
    }

    #[test]
    fn the_manual_impl_example_runs() {
        do_transfer();
    }
}

#[cfg(feature = "derive")]
mod derived {
    use thread_aware::{ThreadAware, create_manual_affinities};

    #[derive(Debug, Clone, ThreadAware)]
    struct Point {
        x: i32,
        y: i32,
    }

    fn derived_example() {
        let affinities = create_manual_affinities(&[2]);
        let p = Point { x: 5, y: 9 };
        // Transfer the value between two affinities. In this simple case the
        // data just gets copied, but for complex types the generated impl
        // calls `transfer` on each field.
        let _p2 = p.relocated(affinities[0], affinities[1]);
    }

    #[test]
    fn the_derive_example_runs() {
        derived_example();
    }
}
