export * from './message.js';
export * from './envelope.js';
