/** The tests pick ports the way every raftkv tool does (util/ports.ts). */
export { freePorts } from '../../util/ports.js';
