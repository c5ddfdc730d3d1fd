// A C++ library for the crash-report tests: `crashy_crash()` dereferences NULL inside a
// lambda that a class template's const method calls through std::function, so the C stack
// holds the kinds of names C++ code crashes in (templates, a lambda, std:: internals, and
// a function template whose demangled name is too long to print whole).
// Built with -O0 by the tests so every call keeps its frame.
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace crashy {

template <typename T>
struct Foo {
    T value;
    int bar(const T* p) const;
};

template <typename T>
int Foo<T>::bar(const T* p) const {
    std::function<int(int)> poke = [p](int depth) {
        volatile const T* target = p;
        return static_cast<int>(*target) + depth;  // p is NULL: the crash
    };
    return poke(1) + static_cast<int>(value);
}

template struct Foo<int>;

// Over 1 KiB once demangled: std::string is written out in full, several times.
using Table = std::map<std::string, std::vector<std::map<std::string, std::string>>>;

template <typename Context>
int relay(const Context& context, int v) {
    Foo<int> foo{v + static_cast<int>(context.size())};
    return foo.bar(nullptr);
}

}  // namespace crashy

extern "C" int crashy_crash(int v) {
    crashy::Table table;
    return crashy::relay(table, v);
}
