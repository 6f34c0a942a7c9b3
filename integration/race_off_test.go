//go:build !race

package integration

// raceEnabled is true under the race detector, where bcrypt at the
// production cost of the unknown-user dummy hash takes tens of seconds.
const raceEnabled = false
