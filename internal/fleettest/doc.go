// Package fleettest runs a real coordinator and real workers together in one
// process, each through its production constructor (coordinator.New and
// NewServer, worker.Run), connected over an in-memory listener, against a
// fake Dragonfly API: the tests of what only the two together show. It has
// no code outside its tests.
package fleettest
