package scan

// The rule helpers of the package's tests, for its external tests
// (differential_test.go, package scan_test).
var (
	LoadSet    = loadSet
	CompileSet = compileSet
)
