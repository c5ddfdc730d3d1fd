// A pybind11 module whose bound functions crash, for testing how C++ frames are named:
// pybind11's dispatch lambda (a function of a closure type inside a function template),
// calls inlined into it, and a member function of a class local to a function.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

namespace py = pybind11;

namespace shapes {

struct Grid {
    int *cells = nullptr;
    // Inlined into the dispatch lambda at -O2: the faulting write.
    void poke(int index, int value) { cells[index] = value; }  // @poke
};

template <typename Target>
void fill(Target &target, int count) {
    for (int i = 0; i < count; ++i) {
        target.poke(i, i * 3);
    }
}

// A class local to a function: its member functions are nested in the function's DWARF
// subprogram. Not inlined, so it is a frame of its own under the dispatch lambda.
int checksum_of(const std::string &text, int *sink) {
    struct Accumulator {
        int *target;
        __attribute__((noinline)) int add(const std::string &s) {
            int sum = 0;
            for (char c : s) {
                sum += c;
            }
            *target = sum;  // @add: the fault when target is null
            return sum;
        }
    };
    Accumulator acc{sink};
    return acc.add(text);
}

}  // namespace shapes

PYBIND11_MODULE(pybindext, m) {
    m.doc() = "crashes under pybind11's dispatch lambda";
    // Everything below the dispatch lambda is inlined into it.
    // `address` comes from Python so the compiler cannot see the null pointer and drop the
    // write (or replace it with a trap).
    m.def("fill_grid", [](std::uintptr_t address, int count) {
        shapes::Grid grid{reinterpret_cast<int *>(address)};
        shapes::fill(grid, count);
        return count;
    });
    // A call into a local class's member function, out of line.
    m.def("checksum", [](const std::string &text, std::uintptr_t sink) {
        return shapes::checksum_of(text, reinterpret_cast<int *>(sink));
    });
}
