//go:build race

package scan_test

// raceEnabled: the race detector slows libyara's callbacks and the engine
// several times over.
const raceEnabled = true
