// C++ constructs whose mangled names the crash-time demangler is checked on (against
// c++filt, in collector/src/signal_safe/demangle/tests.rs). Compiled, never run.
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace corpus {

struct Base {
    virtual ~Base();
    virtual int f(int) const;
    int data;
};
struct Other {
    virtual ~Other();
    virtual void g() volatile;
};
struct Derived : Base, Other {
    ~Derived() override;
    int f(int) const override;
    void g() volatile override;
    Derived& operator=(const Derived&);
    Derived& operator+=(int);
    bool operator==(const Derived&) const;
    bool operator<(const Derived&) const;
    int operator()(int, ...) const;
    int operator[](std::size_t) const;
    Derived* operator->();
    Derived& operator++();
    Derived operator++(int);
    explicit operator bool() const;
    operator int*() const;
    void* operator new(std::size_t);
    void operator delete(void*);
    void* operator new[](std::size_t);
    void operator delete[](void*);
    void lref() &;
    void rref() &&;
    void cv() const volatile;
};
Base::~Base() {}
int Base::f(int x) const { return x + data; }
Other::~Other() {}
void Other::g() volatile {}
Derived::~Derived() {}
int Derived::f(int x) const { return x * 2; }
void Derived::g() volatile {}
Derived& Derived::operator=(const Derived&) { return *this; }
Derived& Derived::operator+=(int) { return *this; }
bool Derived::operator==(const Derived&) const { return true; }
bool Derived::operator<(const Derived&) const { return false; }
int Derived::operator()(int a, ...) const { return a; }
int Derived::operator[](std::size_t i) const { return static_cast<int>(i); }
Derived* Derived::operator->() { return this; }
Derived& Derived::operator++() { return *this; }
Derived Derived::operator++(int) { return *this; }
Derived::operator bool() const { return true; }
Derived::operator int*() const { return nullptr; }
void* Derived::operator new(std::size_t n) { return ::operator new(n); }
void Derived::operator delete(void* p) { ::operator delete(p); }
void* Derived::operator new[](std::size_t n) { return ::operator new(n); }
void Derived::operator delete[](void* p) { ::operator delete(p); }
void Derived::lref() & {}
void Derived::rref() && {}
void Derived::cv() const volatile {}

Derived operator-(const Derived& a, const Derived&) { return a; }
bool operator!(const Derived&) { return false; }
int operator<<(const Derived&, int s) { return s; }

namespace {
int hidden(int x) { return x + 1; }
struct Local {
    int m(long) const { return 3; }
};
}  // namespace
int use_hidden(int x) { return hidden(x) + Local{}.m(2); }

enum class Color : short { red = 1, green = -2 };

template <typename T, int N>
struct Array {
    T items[N];
    T& at(int i) { return items[i]; }
    template <typename U>
    U convert() const { return U(items[0]); }
    template <typename U>
    operator U() const { return U(items[0]); }
};
template struct Array<char, 4>;
template long Array<char, 4>::convert<long>() const;
template Array<char, 4>::operator double() const;

template <bool B, char C, Color K, long L, unsigned long long U>
int constants() { return B + C + static_cast<int>(K) + L + static_cast<int>(U); }
template int constants<true, 'a', Color::green, -7, 12345678901ull>();
template int constants<false, '\n', Color::red, 0, 0>();

template <template <typename, typename> class Container, typename T>
std::size_t count(const Container<T, std::allocator<T>>& c) { return c.size(); }
template std::size_t count<std::vector, int>(const std::vector<int>&);

template <typename... Args>
int variadic(Args&&... args) { return static_cast<int>(sizeof...(args)); }
template int variadic<int, const char (&)[3], double&>(int&&, const char (&)[3], double&);
template int variadic<>();

template <typename T, typename... Rest>
void pack_first(T, Rest*...) {}
template void pack_first<int, char, long>(int, char*, long*);
template void pack_first<int>(int);

using Callback = int (*)(int, const char*);
using Method = int (Base::*)(int) const;
using Field = int Base::*;
void takes_pointers(Callback, Method, Field, void (*)(int) noexcept, int (&)[3], const int (*)[4][5]) {}
void takes_qualified(const volatile int*, int* const*, const char* const&, int&&, std::nullptr_t) {}
void takes_builtins(signed char, unsigned char, short, unsigned short, long long, unsigned long long,
                    __int128, unsigned __int128, long double, wchar_t, char8_t, char16_t, char32_t,
                    bool, float, double, __float128) {}
void takes_std(std::string, const std::wstring&, std::vector<std::string>&, std::map<int, std::string>*,
               std::unique_ptr<Base>, std::shared_ptr<const Other>, std::pair<int, std::string>) {}
std::string returns_string() { return "s"; }
std::function<int(int)> returns_function() { return [](int x) { return x; }; }

template <typename T>
T* returns_pointer(T* p) { return p; }
template int* returns_pointer<int>(int*);
template void (*returns_pointer<void(int)>(void (*)(int)))(int);

template <typename T>
auto lambdas(T t) {
    auto plain = [t](int x) { return x + t; };
    auto generic = [](auto a, auto& b) { return a + b; };
    auto nested = [&](int y) {
        auto inner = [y]() { return y * 2; };
        return inner() + plain(y);
    };
    int k = 1;
    return plain(1) + generic(2, k) + generic(2.0, t) + nested(3);
}
template auto lambdas<int>(int);
template auto lambdas<double>(double);

int statics(int x) {
    static std::string cache = std::to_string(x);
    struct Counter {
        int n;
        int bump() { return ++n; }
        ~Counter() {}
    };
    static Counter counter{x};
    return static_cast<int>(cache.size()) + counter.bump();
}

template <typename T>
struct Outer {
    struct Inner {
        template <typename U>
        static U pick(T, U u) { return u; }
    };
    typedef struct {
        T x;
        T get() const { return x; }
    } Anon;
};
template short Outer<int>::Inner::pick<short>(int, short);
template struct Outer<long>;
int use_anon() {
    Outer<int>::Anon a{1};
    return a.get();
}

thread_local std::string tls_name = "x";
const std::string& tls() { return tls_name; }

__attribute__((noinline)) static int clone_me(int x, int unused) { return x * 3 + unused; }
__attribute__((cold, noinline)) static void cold_path(const char* what) { throw std::string(what); }
int use_clones(int x) {
    if (x == 42) cold_path("bad");
    return clone_me(x, 0) + clone_me(x + 1, 0);
}

}  // namespace corpus
